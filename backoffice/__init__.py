"""The back office: the Django project, its domain apps and the plugin host."""
