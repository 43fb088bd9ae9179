"""The `service_tier` request parameter, as the API takes it on responses and chat."""

from .core import ApiError, Double
from .expect import SERVICE_TIERS, tier_used
from .faults import Markers


def service_tier(double: Double, kind: str, body: dict, question: str, markers: Markers) -> str:
    """The tier the answer reports, or the error the API answers: 400 for a tier it does not
    know or flex on a model without it, 429 resource-unavailable for ``[[flexbusy:N]]``."""
    requested = body.get("service_tier")
    if requested is not None and requested not in SERVICE_TIERS:
        raise ApiError(
            400,
            f"Invalid value: '{requested}'. Supported values are: "
            + ", ".join(f"'{t}'" for t in SERVICE_TIERS)
            + ".",
            code="invalid_value",
            param="service_tier",
        )
    model = body.get("model") or ""
    used = tier_used(requested, model)
    if used is None:
        raise ApiError(
            400,
            f"Flex is not available for this model ({model}). Try another model or "
            "service_tier 'auto'.",
            param="service_tier",
        )
    if used == "flex" and double.faults.flex_busy(question, kind, markers):
        raise ApiError(
            429,
            "Resource unavailable: flex processing has no capacity right now. Please try "
            "again later.",
            type="rate_limit_error",
            code="resource_unavailable",
        )
    return used
