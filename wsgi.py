"""WSGI entry point: gunicorn wsgi:app."""

from tiketq import create_app

app = create_app()
