"""WSGI entry point: the admin app alone (``gunicorn wsgi:app``, ``flask --app wsgi``)."""

from admin_app import create_app

app = create_app()
