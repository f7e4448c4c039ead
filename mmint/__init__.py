"""mmint."""
