"""Function tools that the tests' assistant profiles name (importable by worker processes)."""


def boom(**_: object) -> str:
    raise RuntimeError("the tool broke")


def shout(text: str = "") -> dict:
    return {"loud": text.upper()}
