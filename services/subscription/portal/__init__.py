"""The victims' web portal: find a case, register, enter codes, manage. Server-rendered, works without JavaScript."""
