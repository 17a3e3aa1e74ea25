"""The console's pages, one module per screen; console/app.py lists their routes."""
