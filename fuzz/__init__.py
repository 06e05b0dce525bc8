"""Hostile-input tooling (issue #7): seed messages from the signed test tree, wire mutators,
an in-process tree for the resolver to iterate against, and atheris harnesses."""
