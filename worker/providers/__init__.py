"""The API surfaces rows are answered on: `base.py` the interface, one module per provider."""
