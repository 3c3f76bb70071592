"""Provider clients: one file per provider, all behind the small interfaces in :mod:`.base`."""
