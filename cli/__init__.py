"""``custody-watch``: the one command line for agencies and operators, over the services' public HTTP APIs only.

``commands`` holds one module per command group (feed, agency, delivery), ``options`` the URLs and credentials
they take, ``feeds`` reads and batches feed files, ``output`` formats what is printed, ``client`` talks HTTP and turns
refusals into plain sentences, ``__main__`` puts the groups together (typer). Not part of any service: the
production image does not need it.
"""
