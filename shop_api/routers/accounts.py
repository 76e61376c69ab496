"""Accounts: register, log in, tokens, passwords, profile and addresses; closing the account,
exporting its data, and its sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.contrib.auth.password_validation import (
    MinimumLengthValidator,
    get_default_password_validators,
)
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Body, Field, Router, Schema, Status
from pydantic import ConfigDict, StringConstraints

from backoffice.checkout.cart import merge_guest_cart
from backoffice.customers import privacy, services
from backoffice.customers.models import Address, CustomerProfile
from backoffice.inventory.services import Actor
from backoffice.notifications.services import customer_preferences
from shop_api import examples
from shop_api.auth import ClientAddressThrottle, customer_auth
from shop_api.errors import ApiError
from shop_api.examples import example
from shop_api.schemas import (
    ERROR_RESPONSES,
    AddressFields,
    AddressValues,
    Country,
    InputSchema,
    NotBlank,
    Phone,
    Text,
)

router = Router(tags=["accounts"])

Password = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _PasswordRules:
    """Documents what a new password needs: the length of ``AUTH_PASSWORD_VALIDATORS``' minimum
    (as it is when the schema is written). Shorter, common, all digits or too like the email is
    a 400 ``weak_password`` from the validators themselves."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        for validator in get_default_password_validators():
            if isinstance(validator, MinimumLengthValidator):
                schema["minLength"] = max(schema.get("minLength", 0), validator.min_length)
        schema["description"] = ("A new password: long enough, not all digits, not a common "
                                 "password, not like the email (else a 400 weak_password).")
        return schema


NewPassword = Annotated[Password, _PasswordRules()]
ERRORS = ERROR_RESPONSES


def _account_error(exc: services.AccountError, status: int = 400) -> ApiError:
    errors = [{"field": exc.field, "message": str(exc), "code": exc.code}] if exc.field else []
    return ApiError(status, exc.code, str(exc), errors)


def _merge_guest_cart(request: HttpRequest, user) -> None:
    """A guest who logs in keeps what they put in their cart (``X-Cart-Token``)."""
    token = request.headers.get("X-Cart-Token")
    if token:
        merge_guest_cart(user=user, token=token)


def _user_agent(request: HttpRequest) -> str:
    return request.headers.get("User-Agent", "")


class TokensOut(Schema):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int = Field(description="Seconds until the access token expires.")


class RegisterIn(InputSchema):
    model_config = example(examples.REGISTER)

    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)]
    password: NewPassword
    first_name: Text = ""
    last_name: Text = ""
    phone: Phone = ""
    accepts_marketing: bool = False


class LoginIn(InputSchema):
    model_config = example(examples.LOGIN)

    email: Annotated[str, StringConstraints(max_length=254)]
    password: Password


class RefreshIn(InputSchema):
    model_config = example(examples.REFRESH)

    refresh_token: Annotated[str, StringConstraints(max_length=200)]


class PasswordChangeIn(InputSchema):
    model_config = example(examples.PASSWORD_CHANGE)

    current_password: Password
    new_password: NewPassword


class PasswordResetIn(InputSchema):
    model_config = example(examples.PASSWORD_RESET)

    email: Annotated[str, StringConstraints(max_length=254)]


class PasswordResetConfirmIn(InputSchema):
    model_config = example(examples.PASSWORD_RESET_CONFIRM)

    uid: Annotated[str, StringConstraints(max_length=64)]
    token: Annotated[str, StringConstraints(max_length=128)]
    new_password: NewPassword


class MessageOut(Schema):
    detail: str


class EmailVerificationIn(InputSchema):
    model_config = example(examples.EMAIL_VERIFICATION)

    uid: Annotated[str, StringConstraints(max_length=64)]
    token: Annotated[str, StringConstraints(max_length=128)]


class EmailVerifiedOut(Schema):
    detail: str
    orders_attached: int = Field(description="Guest orders placed with this email that joined "
                                             "the account.")


@router.post("/auth/register", response={201: TokensOut, **ERRORS},
             throttle=[ClientAddressThrottle("register")])
def register(request: HttpRequest, payload: RegisterIn):
    """Create a customer account and log in. Passwords are checked for strength."""
    try:
        user = services.register_customer(**payload.model_dump())
    except services.AccountError as exc:
        raise _account_error(exc, 409 if exc.code == "email_taken" else 400) from exc
    _merge_guest_cart(request, user)
    return Status(201, services.start_session(user, user_agent=_user_agent(request)))


@router.post("/auth/login", response={200: TokensOut, **ERRORS},
             throttle=[ClientAddressThrottle("login")])
def login(request: HttpRequest, payload: LoginIn):
    """Log in with email and password; returns an access token and a refresh token."""
    try:
        user = services.check_credentials(email=payload.email, password=payload.password)
    except services.InvalidCredentials as exc:
        raise _account_error(exc, 401) from exc
    _merge_guest_cart(request, user)
    return services.start_session(user, user_agent=_user_agent(request))


@router.post("/auth/refresh", response={200: TokensOut, **ERRORS})
def refresh(request: HttpRequest, payload: RefreshIn):
    """Trade a refresh token for a new pair. Each refresh token works once; reusing one ends
    the session."""
    try:
        return services.refresh_session(refresh_token=payload.refresh_token)
    except services.InvalidToken as exc:
        raise _account_error(exc, 401) from exc


@router.post("/auth/logout", response={204: None, **ERRORS})
def logout(request: HttpRequest, payload: RefreshIn):
    """End the session of this refresh token; its access tokens stop working at once."""
    services.log_out(refresh_token=payload.refresh_token)
    return Status(204, None)


@router.post("/auth/password/change", auth=customer_auth, response={200: TokensOut, **ERRORS})
def change_password(request: HttpRequest, payload: PasswordChangeIn):
    """Change the password. Every session ends; the answer carries a new one for this client."""
    try:
        return services.change_password(
            user=request.auth, current_password=payload.current_password,
            new_password=payload.new_password, user_agent=_user_agent(request),
        )
    except services.AccountError as exc:
        raise _account_error(exc) from exc


@router.post("/auth/password/reset", response={202: MessageOut, **ERRORS},
             throttle=[ClientAddressThrottle("password_reset")])
def request_password_reset(request: HttpRequest, payload: PasswordResetIn):
    """Email a reset link. The answer is the same whether or not the account exists."""
    services.request_password_reset(email=payload.email)
    return Status(
        202, {"detail": "If an account exists for this email, a reset link is on its way."}
    )


@router.post("/auth/password/reset/confirm", response={204: None, **ERRORS},
             throttle=[ClientAddressThrottle("password_reset")])
def confirm_password_reset(request: HttpRequest, payload: PasswordResetConfirmIn):
    """Set a new password with the uid and token from the reset link; every session ends."""
    try:
        services.reset_password(uid=payload.uid, token=payload.token,
                                new_password=payload.new_password)
    except services.AccountError as exc:
        raise _account_error(exc) from exc
    return Status(204, None)


@router.post("/auth/email/verify", response={200: EmailVerifiedOut, **ERRORS},
             throttle=[ClientAddressThrottle("email_verification")])
def verify_email(request: HttpRequest, payload: EmailVerificationIn):
    """Confirm the account's email with the uid and token from the mailed link. Guest orders
    placed with that email join the account only then."""
    try:
        attached = services.verify_email(uid=payload.uid, token=payload.token)
    except services.AccountError as exc:
        raise _account_error(exc) from exc
    return {"detail": "Your email is confirmed.", "orders_attached": attached}


@router.post("/auth/email/verify/resend", auth=customer_auth,
             response={202: MessageOut, **ERRORS},
             throttle=[ClientAddressThrottle("email_verification")])
def resend_email_verification(request: HttpRequest):
    """Mail the confirmation link again (nothing is sent when the email is confirmed)."""
    sent = services.request_email_verification(user=request.auth)
    return Status(202, {"detail": "A confirmation link is on its way." if sent
                        else "Your email is confirmed already."})


# --- Profile ----------------------------------------------------------------------------------


class ProfileOut(Schema):
    email: str
    first_name: str
    last_name: str
    phone: str
    accepts_marketing: bool
    preferences: dict
    email_verified: bool
    notification_channels: list[str] = Field(
        description="Channels of the messages about your orders (\"email\", \"sms\"...); the "
                    "store's defaults until you choose. Account mails always go by email.")
    language: str = Field(description="Messages use it where the store has templates in it; "
                                      "blank: the store's language.")


class ProfileIn(InputSchema):
    model_config = example(examples.PROFILE)

    first_name: Text | None = None
    last_name: Text | None = None
    phone: Phone | None = None
    accepts_marketing: bool | None = None
    preferences: dict | None = None
    notification_channels: list[Annotated[str, StringConstraints(max_length=50)]] | None = Field(
        None, max_length=10)
    language: Annotated[str, StringConstraints(strip_whitespace=True, max_length=10)] | None = None


def _profile_out(user, profile: CustomerProfile) -> dict:
    channels, language = customer_preferences(user.pk)
    return {
        "email": user.email, "first_name": user.first_name, "last_name": user.last_name,
        "phone": profile.phone, "accepts_marketing": profile.accepts_marketing,
        "preferences": profile.preferences,
        "email_verified": profile.email_verified_at is not None,
        "notification_channels": channels, "language": language,
    }


@router.get("/me", auth=customer_auth, response={200: ProfileOut, **ERRORS})
def my_profile(request: HttpRequest):
    """The logged-in customer's profile."""
    profile, _ = CustomerProfile.objects.get_or_create(user=request.auth)
    return _profile_out(request.auth, profile)


@router.patch("/me", auth=customer_auth, response={200: ProfileOut, **ERRORS})
def update_my_profile(request: HttpRequest, payload: ProfileIn):
    """Change any of name, phone, marketing consent and preferences."""
    changes = payload.model_dump(exclude_none=True)
    try:
        profile = services.update_profile(user=request.auth, **changes)
    except services.AccountError as exc:
        raise _account_error(exc) from exc
    return _profile_out(request.auth, profile)


# --- Addresses --------------------------------------------------------------------------------


class AddressIn(AddressFields):
    model_config = example(examples.ADDRESS_IN)

    is_default_shipping: bool = False
    is_default_billing: bool = False


class AddressPatch(InputSchema):
    model_config = example(examples.ADDRESS_PATCH)

    first_name: Text | None = None
    last_name: Text | None = None
    company: Text | None = None
    line1: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=255), NotBlank] | None = None
    line2: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] | None = None
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=100), NotBlank] | None = None
    region: Text | None = None
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True,
                                                  max_length=20)] | None = None
    country: Country | None = None
    phone: Phone | None = None
    is_default_shipping: bool | None = None
    is_default_billing: bool | None = None


class AddressOut(AddressValues):
    id: int
    is_default_shipping: bool
    is_default_billing: bool


def _my_address(request: HttpRequest, address_id: int) -> Address:
    # Another customer's address is "not found", never "forbidden": its existence is not told.
    return get_object_or_404(Address, pk=address_id, user=request.auth)


@router.get("/me/addresses", auth=customer_auth, response={200: list[AddressOut], **ERRORS})
def list_addresses(request: HttpRequest):
    """The customer's addresses, defaults first."""
    return list(Address.objects.filter(user=request.auth))


@router.post("/me/addresses", auth=customer_auth, response={201: AddressOut, **ERRORS})
def create_address(request: HttpRequest, payload: AddressIn):
    """Add an address. The first one becomes the default for shipping and billing."""
    fields = payload.model_dump()
    defaults = {k: fields.pop(k) for k in ("is_default_shipping", "is_default_billing")}
    address = services.save_address(user=request.auth, **fields,
                                    **{k: v for k, v in defaults.items() if v})
    return Status(201, address)


@router.get("/me/addresses/{address_id}", auth=customer_auth,
            response={200: AddressOut, **ERRORS})
def get_address(request: HttpRequest, address_id: int):
    """One of the customer's addresses."""
    return _my_address(request, address_id)


@router.patch("/me/addresses/{address_id}", auth=customer_auth,
              response={200: AddressOut, **ERRORS})
def update_address(request: HttpRequest, address_id: int, payload: AddressPatch):
    """Change an address; making it a default unsets the previous default."""
    address = _my_address(request, address_id)
    return services.save_address(user=request.auth, address=address,
                                 **payload.model_dump(exclude_none=True))


@router.delete("/me/addresses/{address_id}", auth=customer_auth, response={204: None, **ERRORS})
def delete_address(request: HttpRequest, address_id: int):
    """Delete an address (orders keep their own copy)."""
    _my_address(request, address_id).delete()
    return Status(204, None)


# --- The customer's own data: closing the account, exporting it, sessions -------------------


class CloseAccountIn(InputSchema):
    model_config = example(examples.CLOSE_ACCOUNT)

    password: Password | None = Field(
        None, description="The current password: needed when the account has one (an account "
                          "made by signing in with a provider has none).")


_CLOSE_STATUS = {"staff_account": 403, "already_closed": 409}
# The body may be left out (an account without a password); its example is documented here.
_OPTIONAL_BODY = Body(None, examples=[examples.CLOSE_ACCOUNT])


@router.delete("/me", auth=customer_auth, response={204: None, **ERRORS},
               throttle=[ClientAddressThrottle("login")])
def close_my_account(request: HttpRequest, payload: CloseAccountIn | None = _OPTIONAL_BODY):
    """Close the account for good. Its personal data is erased (name, email, phone, addresses,
    preferences, carts; the contact details and addresses of its orders, but their country);
    orders keep their numbers, lines and totals, reviews stay without the name. Every session
    ends at once, and a last email says the account is closed. The email can register again.

    ``password``: the current password, when the account has one (400 ``password_required``
    or ``invalid_password`` otherwise). A staff account cannot be closed here (403
    ``staff_account``). Password checks count as log-in attempts (rate-limited)."""
    try:
        privacy.close_account(request.auth, actor=Actor(user=request.auth),
                              password=payload.password if payload else None)
    except services.AccountError as exc:
        raise _account_error(exc, _CLOSE_STATUS.get(exc.code, 400)) from exc
    return Status(204, None)


class ExportProfileOut(Schema):
    email: str
    first_name: str
    last_name: str
    phone: str
    joined_at: datetime
    last_login: datetime | None
    email_verified_at: datetime | None
    closed_at: datetime | None


class ExportConsentsOut(Schema):
    accepts_marketing: bool
    notification_channels: list[str] = Field(
        description="The channels of the messages about orders (the store's defaults until "
                    "chosen).")
    notification_channels_chosen: bool
    language: str


class ExportAddressOut(AddressValues):
    id: int
    is_default_shipping: bool
    is_default_billing: bool
    created_at: datetime


Amount = Annotated[str, Field(description="A decimal string with the currency's decimals.")]


class ExportOrderLineOut(Schema):
    sku: str
    product_name: str
    variant_name: str
    quantity: int
    unit_price: Amount
    discount: Amount
    total: Amount
    quantity_shipped: int
    quantity_refunded: int


class ExportOrderOut(Schema):
    number: str
    placed_at: datetime
    status: str
    payment_status: str
    fulfilment_status: str
    email: str
    phone: str
    currency: str
    subtotal: Amount
    discount_total: Amount
    shipping_total: Amount
    total: Amount
    refunded_total: Amount
    coupon_code: str
    shipping_method: str
    payment_method: str
    paid_at: datetime | None
    cancelled_at: datetime | None
    customer_note: str
    shipping_address: AddressValues
    billing_address: AddressValues
    lines: list[ExportOrderLineOut]


class ExportReviewOut(Schema):
    id: int
    product_slug: str
    product_name: str
    rating: int
    comment: str
    published: bool
    verified_purchase: bool
    created_at: datetime
    updated_at: datetime


class ExportSessionOut(Schema):
    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str
    revoked_at: datetime | None
    live: bool


class ExportSignInOut(Schema):
    provider: str
    email: str = Field(description="The verified email the provider shared, if any.")
    linked_at: datetime
    last_used_at: datetime | None


class AccountExportOut(Schema):
    """Everything the store holds about the customer. Parts may be added (with a new key);
    ``format`` names this document's version."""

    model_config = ConfigDict(extra="allow")

    format: str
    exported_at: datetime
    profile: ExportProfileOut
    consents: ExportConsentsOut
    preferences: dict
    addresses: list[ExportAddressOut]
    orders: list[ExportOrderOut]
    reviews: list[ExportReviewOut]
    sessions: list[ExportSessionOut]
    sign_ins: list[ExportSignInOut] = Field(description="Sign-in providers linked to the "
                                                        "account (OpenID Connect).")


@router.get("/me/export", auth=customer_auth, response={200: AccountExportOut, **ERRORS})
def export_my_data(request: HttpRequest):
    """Everything the store holds about you, as one JSON document: profile, consents
    (marketing, notification channels, language), preferences, addresses, orders (lines,
    totals, statuses, addresses), reviews, sessions and linked sign-in providers."""
    return privacy.export_account(request.auth, actor=Actor(user=request.auth))


class SessionOut(Schema):
    id: str = Field(description="DELETE /me/sessions/{id} ends it.")
    created_at: datetime = Field(description="When it logged in.")
    last_used_at: datetime = Field(description="Its last log-in or token refresh.")
    user_agent: str
    current: bool = Field(description="The session of the access token of this request.")


@router.get("/me/sessions", auth=customer_auth, response={200: list[SessionOut], **ERRORS})
def my_sessions(request: HttpRequest):
    """Your live sessions (devices logged in), most recently used first."""
    current = getattr(request, "api_session_id", None)
    return [
        {"id": str(family.pk), "created_at": family.created_at,
         "last_used_at": family.last_used_at or family.created_at,
         "user_agent": family.user_agent, "current": family.pk == current}
        for family in services.live_sessions(request.auth)
    ]


@router.delete("/me/sessions/{session_id}", auth=customer_auth,
               response={204: None, **ERRORS})
def end_session(request: HttpRequest, session_id: str):
    """Log one session out (a lost phone): its tokens stop working at once. Ending the
    current session logs this client out. Another customer's session is a 404."""
    if not services.revoke_session(user=request.auth, session_id=session_id):
        raise ApiError(404, "not_found", "Not found.")
    return Status(204, None)
