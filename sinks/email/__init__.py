"""The email notifier: one email per applied visit, rendered with Jinja2, sent once."""
