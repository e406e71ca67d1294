"""Environments: bindings, profiles and generations, shell integration, PATH reports."""
