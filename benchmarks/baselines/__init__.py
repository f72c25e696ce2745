"""Baselines for the mixed-load benchmark: the service's four hot endpoints, bare.

`statements.py` holds the SQL, `work.py` what each endpoint does with it; `flask_app.py` (Flask +
psycopg2 under gunicorn) and `fastapi_app.py` (FastAPI + a SQLAlchemy session per request under
uvicorn) only wire them to a framework, so both do exactly the same database and Midtrans work.
"""
