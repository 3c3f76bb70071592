"""``custody-watch``: the command line for agencies and operators, over the public HTTP APIs only.

``feeds`` reads and batches feed files, ``output`` formats what is printed, ``client`` talks HTTP and turns refusals
into plain sentences, ``__main__`` wires the commands (typer).
"""
