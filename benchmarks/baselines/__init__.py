"""Baselines for the load benchmarks: the service's four hot endpoints, bare.

`statements.py` holds the SQL, `work.py` what each endpoint does with it; `flask_app.py` (Flask +
psycopg2 under gunicorn) and `fastapi_app.py` (FastAPI + a SQLAlchemy session per request under
uvicorn) only wire them to a framework, so both do exactly the same database and Midtrans work.
Their webhook does synchronously, in the request, what the service splits between its door and its
worker: verify, store, ask Midtrans's status API, lock and update the payment, insert the rows.
"""
