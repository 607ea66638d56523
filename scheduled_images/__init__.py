"""The entry modules at the top of the import graph: the command root and `up`.

Nothing in the service imports this package. The command root finds each package's commands
through the `scheduled_images.commands` entry points, so no low layer needs to know them.
"""
