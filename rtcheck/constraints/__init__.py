"""Protocol rules and the DVH metric grammar they are written in."""
