"""Domain errors: each names the problem; the API maps them to 422, 404, 409 and 403."""


class DomainError(ValueError):
    """A request the rules refuse (422)."""

    status = 422


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """The request is valid but the record's state forbids it (409): a slip already used."""

    status = 409


class Forbidden(DomainError):
    """The caller may not do this to this record (403): a host's request for another unit."""

    status = 403
