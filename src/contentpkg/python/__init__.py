"""Python packages: index client, resolver, lock file, wheels, sdists, views."""
