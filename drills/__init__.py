"""Fault drills: the real service under load while things break, then an audit of every rupiah."""
