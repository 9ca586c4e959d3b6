"""Domain errors: each names the problem; the API maps them to 422, 404 and 409."""


class DomainError(ValueError):
    """A request the rules refuse (422)."""

    status = 422


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """The request is valid but the record's state forbids it (409): a slip already used."""

    status = 409
