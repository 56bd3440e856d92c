"""Tables, figures and report material rebuilt from finished runs' metric files."""
