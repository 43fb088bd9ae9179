"""A job as a whole: its worksheet in, its answers CSV out, its front end (`cli/`)."""
