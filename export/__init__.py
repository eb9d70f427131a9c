"""Bundle builders: turn a judge checkpoint into a directory the server loads offline."""
