"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from toktoken import create_app
from toktoken.config import running

# Under gunicorn: the settings its master validated (gunicorn.conf.py); else
# from the environment.
app = create_app(running())
