"""An in-memory test double of the OpenAI API, served over real HTTP on loopback.

Run it with ``python -m tests.double`` (see ``__main__``), start it from tests with
``tests.double.fixture.start_double``, and compute what it answers with
``tests.double.expect``.
"""
