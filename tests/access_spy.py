"""`Spy`: an access object's stand-in that records which of its members an attack used (the tests
that an attack stays within its access level)."""


class Spy:
    """Forwards to an access object and records which of its members an attack used."""

    def __init__(self, access):
        object.__setattr__(self, "_access", access)
        object.__setattr__(self, "used", set())

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(self._access, name)
