"""Staff roles and permissions per action (issue 15): the ready-made roles, one permission check
on the service path (people by their permissions, API keys by their scopes, jobs always), the
admin offering only what a role may do (a direct POST of anything else is a 403), "Copy role",
and the audit page."""

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import RequestFactory

from backoffice import permissions, roles
from backoffice.admin_navigation import sidebar_navigation
from backoffice.audit.models import AuditAction, AuditEntry
from backoffice.catalog.models import Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.customers.privacy import close_account
from backoffice.customers.services import export_customers
from backoffice.imports.models import ImportJob, ImportStatus
from backoffice.imports.services import start_import_job
from backoffice.imports.tasks import dry_run_import_job
from backoffice.integrations.models import ApiKey, Scope
from backoffice.integrations.services import create_api_key, key_actor, revoke_api_keys
from backoffice.inventory.models import Stock
from backoffice.inventory.services import (
    SYSTEM,
    Actor,
    CountedLevel,
    adjust_stock,
    set_counted_levels,
)
from backoffice.notifications import services as notifications
from backoffice.notifications.models import Notification, Status
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderEvent
from backoffice.orders.status import FulfilmentStatus, OrderStatus, PaymentStatus
from backoffice.payments import services as payments
from backoffice.permissions import ActionNotPermitted
from backoffice.plugin_host.models import PluginConfig
from backoffice.plugin_host.services import activate_plugins, update_plugin_config

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}
ORDERS = "/admin/orders/order/"
OWNER, CATALOG, CLERK, SUPPORT, FINANCE = (
    roles.OWNER, roles.CATALOG_MANAGER, roles.FULFILMENT_CLERK, roles.CUSTOMER_SUPPORT,
    roles.FINANCE)
ALL_ROLES = list(roles.ROLES)
_keys = itertools.count()


@pytest.fixture(autouse=True)
def _store():
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    tee = Product.objects.create(name="Tee", slug="tee")
    small = Variant.objects.create(product=tee, sku="TEE-S", name="S", price="800.00")
    mug = Variant.objects.create(product=Product.objects.create(name="Mug", slug="mug"),
                                 sku="MUG", price="300.00")
    adjust_stock(variant_id=small.pk, quantity_change=200)
    adjust_stock(variant_id=mug.pk, quantity_change=200)


def member(role: str, username: str = ""):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(
        username or role.lower().replace(" ", "-"), password="pw-123-long", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def unpaid() -> Order:
    cart = Cart.objects.create()
    carts.add_to_cart(cart=cart, sku="MUG", quantity=2)
    order, _ = place_order(cart, CheckoutRequest(
        shipping_address=ADDRESS, shipping_method="flat_rate", email="amina@example.com",
        payment_method="manual"), idempotency_key=f"roles-{next(_keys)}")
    return Order.objects.get(pk=order.pk)


def paid() -> Order:
    return orders.mark_paid(unpaid())


def shipped() -> Order:
    order = paid()
    orders.create_shipment(order, orders.ShipmentRequest())
    return Order.objects.get(pk=order.pk)


def fresh(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def bulk(client, url: str, action: str, *pks, **extra):
    return client.post(url, {"action": action, helpers.ACTION_CHECKBOX_NAME: list(pks),
                             "index": 0, **extra})


# --- The roles ------------------------------------------------------------------------------------


def role_names(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{app}.{code}" for app, code in
            group.permissions.values_list("content_type__app_label", "codename")}


def test_the_roles_exist_after_migrate_with_exactly_their_permissions():
    for name, wanted in roles.ROLES.items():
        have = role_names(name)
        if wanted == roles.ALL:
            assert len(have) == Permission.objects.count()
            continue
        expected = {p for p in wanted if apps.is_installed("backoffice.reports")
                    or not p.startswith("reports.")}
        if apps.is_installed("backoffice.reports") and name == FINANCE:
            assert permissions.VIEW_REPORTS in have
        assert have == expected, name
    # Every permission a role names exists (the optional reports app's too, once installed).
    installed = {config.label for config in apps.get_app_configs()}
    for wanted in roles.ROLES.values():
        for perm in () if wanted == roles.ALL else wanted:
            app_label, codename = perm.split(".")
            if app_label in roles.OPTIONAL_APPS and app_label not in installed:
                continue
            assert Permission.objects.filter(content_type__app_label=app_label,
                                             codename=codename).exists(), perm
    # What the roles say in words.
    assert permissions.REFUND_ORDER not in role_names(CLERK)
    assert permissions.MARK_ORDER_PAID not in role_names(CLERK)
    assert not any(p.startswith("catalog.change") for p in role_names(CLERK) | role_names(FINANCE))
    assert {permissions.REFUND_ORDER, permissions.MARK_ORDER_PAID} <= role_names(FINANCE)


def test_a_migrate_puts_an_edited_role_back_and_leaves_copies_and_other_groups_alone():
    clerk = Group.objects.get(name=CLERK)
    refund = Permission.objects.get(codename="refund_order")
    ship = Permission.objects.get(codename="ship_order")
    clerk.permissions.add(refund)
    clerk.permissions.remove(ship)
    copy = roles.copy_role(clerk, actor=SYSTEM)
    assert copy.name == "Fulfilment clerk (copy)"
    Group.objects.get(name=FINANCE).delete()
    custom = Group.objects.create(name="Weekend staff")
    custom.permissions.add(refund)

    call_command("migrate", verbosity=0, interactive=False)

    assert role_names(CLERK) == set(roles.ROLES[CLERK])
    assert Group.objects.filter(name=FINANCE).exists()
    copied = role_names(copy.name)
    assert permissions.REFUND_ORDER in copied and permissions.SHIP_ORDER not in copied
    assert set(custom.permissions.all()) == {refund}


def test_copy_role_from_the_admin_makes_an_editable_copy_that_is_recorded(client):
    owner = member(OWNER)
    client.force_login(owner)
    clerk = Group.objects.get(name=CLERK)
    groups_page = client.get("/admin/auth/group/").content.decode()
    assert 'value="copy_roles"' in groups_page and "built-in" in groups_page

    response = bulk(client, "/admin/auth/group/", "copy_roles", clerk.pk)
    assert response.status_code == 302
    copy = Group.objects.get(name="Fulfilment clerk (copy)")
    assert set(copy.permissions.all()) == set(clerk.permissions.all())
    bulk(client, "/admin/auth/group/", "copy_roles", clerk.pk)
    assert Group.objects.filter(name="Fulfilment clerk (copy 2)").exists()
    entry = AuditEntry.objects.filter(action=AuditAction.ROLE_COPIED).first()
    assert (entry.actor, entry.object_repr) == (owner, "Fulfilment clerk (copy 2)")

    # The built-in role is read-only and cannot be deleted; the copy is editable.
    page = client.get(f"/admin/auth/group/{clerk.pk}/change/").content.decode()
    assert "built-in role" in page and 'name="_save"' not in page
    assert client.post(f"/admin/auth/group/{clerk.pk}/change/",
                       {"name": "Clerks"}).status_code == 403
    assert client.post(f"/admin/auth/group/{clerk.pk}/delete/",
                       {"post": "yes"}).status_code == 403
    response = client.post(f"/admin/auth/group/{copy.pk}/change/",
                           {"name": "Packers", "permissions": [
                               Permission.objects.get(codename="ship_order").pk]})
    assert response.status_code == 302
    assert role_names("Packers") == {permissions.SHIP_ORDER}


def test_only_the_owner_may_copy_roles():
    with pytest.raises(ActionNotPermitted):
        roles.copy_role(Group.objects.get(name=CLERK), actor=Actor(user=member(FINANCE)))
    assert Group.objects.count() == len(roles.ROLES)


# --- Each role: what it may do works, everything else is refused ----------------------------------


@dataclass
class Case:
    """One action: who may do it, where its button is, how it is posted and called."""

    roles: set[str]
    setup: Any  # () -> target
    page: Any  # target -> URL of the page that offers it
    marker: Any  # target -> text that is on that page only when it is offered
    post: Any  # (client, target) -> response
    done: Any  # (target, response) -> whether it happened
    service: Any = None  # (actor, target) -> calls the service


def _order_action(path: str, data: dict | None = None):
    return lambda client, order: client.post(f"{ORDERS}{order.pk}/{path}/", data or {})


def _order_page(order: Order) -> str:
    return f"{ORDERS}{order.pk}/change/"


def _stock():
    return Stock.objects.get(variant__sku="TEE-S")


def _failed_message():
    return Notification.objects.create(event="order_placed", event_key="k1", audience="customer",
                                       channel="email", recipient="amina@example.com",
                                       status=Status.FAILED)


def _checked_import():
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user("uploader", is_staff=True)
    job = ImportJob.objects.create(
        file=SimpleUploadedFile("stock.csv", b"sku,warehouse,quantity\nMUG,main,150\n"),
        file_format="native", created_by=owner)
    dry_run_import_job(job.pk)
    job.refresh_from_db()
    assert job.can_run, job.dry_run_result
    return job


def _customer():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("wanjiru@example.com", "wanjiru@example.com",
                                                first_name="=HYPERLINK(1)")


def _export_orders(client, order):
    from backoffice.orders.admin import OrderResource

    fields = {f"orderresource_{name}": "on" for name in OrderResource().get_export_order()}
    return client.post(f"{ORDERS}export/", {"format": "0", "resource": "0", **fields})


CASES = {
    "mark paid": Case(
        {OWNER, FINANCE}, unpaid, _order_page,
        lambda o: f"{ORDERS}{o.pk}/mark-paid/", _order_action("mark-paid"),
        lambda o, r: fresh(o).payment_status == PaymentStatus.PAID,
        lambda actor, o: payments.record_manual_payment(o.pk, actor=actor)),
    "ship": Case(
        {OWNER, CLERK}, paid, _order_page, lambda o: f"{ORDERS}{o.pk}/ship/",
        lambda client, o: client.post(f"{ORDERS}{o.pk}/ship/", {
            f"line_{line.pk}": line.quantity for line in o.lines.all()}),
        lambda o, r: fresh(o).fulfilment_status == FulfilmentStatus.SHIPPED,
        lambda actor, o: orders.create_shipment(o, orders.ShipmentRequest(), actor=actor)),
    "deliver": Case(
        {OWNER, CLERK}, shipped, _order_page, lambda o: f"{ORDERS}{o.pk}/mark-delivered/",
        _order_action("mark-delivered"),
        lambda o, r: fresh(o).fulfilment_status == FulfilmentStatus.DELIVERED,
        lambda actor, o: orders.mark_delivered(o, actor=actor)),
    "refund": Case(
        {OWNER, FINANCE}, paid, _order_page, lambda o: f"{ORDERS}{o.pk}/refund/",
        _order_action("refund", {"amount": "100.00", "reason": "damaged"}),
        lambda o, r: fresh(o).refunded_total == Decimal("100.00"),
        lambda actor, o: payments.refund_order(o, orders.RefundRequest(amount=Decimal("100")),
                                               actor=actor)),
    "cancel unpaid": Case(
        {OWNER, SUPPORT}, unpaid, _order_page, lambda o: f"{ORDERS}{o.pk}/cancel/",
        _order_action("cancel"), lambda o, r: fresh(o).status == OrderStatus.CANCELLED,
        lambda actor, o: orders.cancel_order(o, actor=actor)),
    "cancel paid": Case(
        {OWNER}, paid, _order_page, lambda o: f"{ORDERS}{o.pk}/cancel/",
        _order_action("cancel"), lambda o, r: fresh(o).status == OrderStatus.CANCELLED,
        lambda actor, o: orders.cancel_order(o, actor=actor)),
    "note": Case(
        {OWNER, SUPPORT}, unpaid, _order_page, lambda o: f"{ORDERS}{o.pk}/note/",
        _order_action("note", {"note": "Called the customer."}),
        lambda o, r: OrderEvent.objects.filter(order=o, kind=OrderEvent.Kind.NOTE).exists(),
        lambda actor, o: orders.add_note(o, "Called.", actor=actor)),
    "export orders": Case(
        {OWNER, FINANCE}, unpaid, lambda o: ORDERS, lambda o: f"{ORDERS}export/",
        _export_orders,
        lambda o, r: r.status_code == 200 and r["Content-Type"].startswith("text/csv")),
    "adjust stock": Case(
        {OWNER, CATALOG, CLERK}, _stock, lambda s: f"/admin/inventory/stock/{s.pk}/change/",
        lambda s: f"/admin/inventory/stock/{s.pk}/adjust/",
        lambda client, s: client.post(f"/admin/inventory/stock/{s.pk}/adjust/", {
            "mode": "add", "quantity": "5", "reason": "adjustment", "reference": "",
            "note": ""}),
        lambda s, r: Stock.objects.get(pk=s.pk).quantity == s.quantity + 5,
        lambda actor, s: adjust_stock(variant_id=s.variant_id, quantity_change=5,
                                      actor=actor)),
    "resend a notification": Case(
        {OWNER, SUPPORT}, _failed_message,
        lambda n: f"/admin/notifications/notification/{n.pk}/change/",
        lambda n: f"/admin/notifications/notification/{n.pk}/resend/",
        lambda client, n: client.post(f"/admin/notifications/notification/{n.pk}/resend/"),
        lambda n, r: Notification.objects.get(pk=n.pk).resends == 1,
        lambda actor, n: notifications.resend([n.pk], actor=actor)),
    "change a plugin's settings": Case(
        {OWNER}, lambda: PluginConfig.objects.get(identifier="flat_rate_shipping"),
        lambda p: f"/admin/plugins/pluginconfig/{p.pk}/change/", lambda p: 'name="_save"',
        lambda client, p: client.post(f"/admin/plugins/pluginconfig/{p.pk}/change/", {
            "active": "on", "setting__label": "Standard delivery", "setting__rate": "9.00",
            "setting__free_over": "", "setting__countries": ""}),
        lambda p, r: PluginConfig.objects.get(pk=p.pk).settings.get("rate") == "9.00",
        lambda actor, p: update_plugin_config(identifier=p.identifier, active=True,
                                              changes={"rate": "9.00"}, actor=actor)),
    "create an API key": Case(
        {OWNER}, lambda: None, lambda _: "/admin/integrations/apikey/",
        lambda _: "/admin/integrations/apikey/add/",
        lambda client, _: client.post("/admin/integrations/apikey/add/",
                                      {"name": "ERP", "scopes": ["stock:write"]}),
        lambda _, r: ApiKey.objects.filter(name="ERP").exists(),
        lambda actor, _: create_api_key(name="ERP", scopes=["stock:write"], actor=actor)),
    "run an import": Case(
        {OWNER, CATALOG}, _checked_import,
        lambda j: f"/admin/imports/importjob/{j.pk}/change/",
        lambda j: f"/admin/imports/importjob/{j.pk}/run-import/",
        lambda client, j: client.post(f"/admin/imports/importjob/{j.pk}/run-import/"),
        lambda j, r: ImportJob.objects.get(pk=j.pk).status != ImportStatus.VALIDATED,
        lambda actor, j: start_import_job(j, actor=actor)),
    "export customers": Case(
        {OWNER, FINANCE}, _customer, lambda c: "/admin/auth/user/",
        lambda c: 'value="export_customers"',
        lambda client, c: bulk(client, "/admin/auth/user/", "export_customers", c.pk),
        lambda c, r: r.status_code == 200 and b"wanjiru@example.com" in r.content,
        lambda actor, c: export_customers(type(c).objects.all(), actor=actor)),
    "close a customer's account": Case(
        {OWNER, SUPPORT}, _customer, lambda c: "/admin/auth/user/",
        lambda c: 'value="close_accounts"',
        lambda client, c: bulk(client, "/admin/auth/user/", "close_accounts", c.pk,
                               apply="yes", confirm="on", reason="their email of 3 May"),
        lambda c, r: not type(c).objects.get(pk=c.pk).is_active,
        lambda actor, c: close_account(c, actor=actor)),
    "change prices": Case(
        {OWNER, CATALOG}, lambda: Product.objects.get(slug="tee"),
        lambda p: "/admin/catalog/product/", lambda p: 'value="change_prices"',
        lambda client, p: bulk(client, "/admin/catalog/product/", "change_prices", p.pk,
                               apply="1", percentage="10"),
        lambda p, r: Variant.objects.get(sku="TEE-S").price == Decimal("880.00")),
    "copy a role": Case(
        {OWNER}, lambda: Group.objects.get(name=CLERK), lambda g: "/admin/auth/group/",
        lambda g: 'value="copy_roles"',
        lambda client, g: bulk(client, "/admin/auth/group/", "copy_roles", g.pk),
        lambda g, r: Group.objects.filter(name="Fulfilment clerk (copy)").exists(),
        lambda actor, g: roles.copy_role(g, actor=actor)),
}


@pytest.mark.parametrize("role", ALL_ROLES)
@pytest.mark.parametrize("name", list(CASES))
def test_a_role_may_do_what_it_is_given_and_is_refused_the_rest(name, role, client,
                                                                 django_capture_on_commit_callbacks):
    case = CASES[name]
    user = member(role)
    client.force_login(user)
    target = case.setup()
    allowed = role in case.roles

    page = client.get(case.page(target))
    offered = page.status_code == 200 and case.marker(target) in page.content.decode()
    assert offered == allowed, f"{role}: {name} {'not ' if allowed else ''}offered"

    with django_capture_on_commit_callbacks(execute=True):
        response = case.post(client, target)
    if allowed:
        assert response.status_code in (200, 302), response.content[:500]
        assert case.done(target, response), f"{role}: {name} did not happen"
        return
    assert response.status_code == 403, f"{role}: {name} answered {response.status_code}"
    assert not case.done(target, response)
    if case.service is not None:
        with pytest.raises(ActionNotPermitted) as refused:
            case.service(Actor(user=user, label=user.get_username()), target)
        assert user.get_username() in str(refused.value)
        assert not case.done(target, response)


def test_a_direct_post_of_an_action_the_role_lacks_is_a_403_with_the_reason(client):
    clerk = member(CLERK)
    client.force_login(clerk)
    order = paid()
    response = client.post(f"{ORDERS}{order.pk}/refund/", {"amount": "10.00"})
    assert response.status_code == 403
    response = bulk(client, ORDERS, "mark_paid", unpaid().pk)
    assert response.status_code == 403
    assert "may not use the action" in response.content.decode()
    # The service says which permission it needs, in words.
    with pytest.raises(ActionNotPermitted) as refused:
        payments.refund_order(order, orders.RefundRequest(amount=Decimal("10")),
                              actor=Actor(user=clerk))
    assert str(refused.value) == ("fulfilment-clerk may not refund orders: that needs the "
                                  "permission orders.refund_order.")
    assert fresh(order).refunded_total == 0


def test_support_cancels_unpaid_orders_only_and_a_bulk_cancel_lists_the_paid_ones(client):
    support = member(SUPPORT)
    client.force_login(support)
    open_order, paid_order = unpaid(), paid()
    assert f"{ORDERS}{paid_order.pk}/cancel/" not in client.get(
        _order_page(paid_order)).content.decode()
    response = client.post(ORDERS, {"action": "cancel_orders", "index": 0,
                                    helpers.ACTION_CHECKBOX_NAME: [open_order.pk, paid_order.pk]},
                           follow=True)
    found = [str(m) for m in response.context["messages"]]
    assert "1 order cancelled; its stock is back on the shelf." in found
    assert any(f"#{paid_order.number}: customer-support may not cancel orders" in m
               for m in found)
    assert fresh(open_order).status == OrderStatus.CANCELLED
    assert fresh(paid_order).status == OrderStatus.OPEN


def test_a_customer_still_cancels_their_own_unpaid_order_and_a_job_needs_no_permission(
    django_user_model
):
    customer = django_user_model.objects.create_user("amina@example.com", "amina@example.com")
    order = unpaid()
    orders.cancel_order(order, actor=Actor(user=customer), only_if_unpaid=True)
    assert fresh(order).status == OrderStatus.CANCELLED
    guest = unpaid()
    orders.cancel_order(guest, actor=Actor(label="guest amina@example.com"), only_if_unpaid=True)
    assert fresh(guest).status == OrderStatus.CANCELLED
    # A staff member is staff whatever the path: no role, no cancel.
    clerk = django_user_model.objects.create_user("temp", is_staff=True)
    with pytest.raises(ActionNotPermitted):
        orders.cancel_order(unpaid(), actor=Actor(user=clerk), only_if_unpaid=True)
    # Jobs (the payment window) are the system.
    job = unpaid()
    orders.cancel_order(job, actor=Actor(label="payment window expired"))
    assert fresh(job).status == OrderStatus.CANCELLED
    assert not AuditEntry.objects.exists()  # customers and jobs are not staff actions


def test_api_keys_are_checked_by_their_scopes_as_permissions():
    reader, _ = create_api_key(name="BI", scopes=[Scope.ORDERS_READ])
    writer, _ = create_api_key(name="WMS", scopes=[Scope.ORDERS_WRITE])
    catalog, _ = create_api_key(name="PIM", scopes=[Scope.CATALOG_WRITE])
    order = paid()
    with pytest.raises(ActionNotPermitted) as refused:
        orders.create_shipment(order, orders.ShipmentRequest(), actor=key_actor(reader))
    assert "API key BI" in str(refused.value)
    with pytest.raises(ActionNotPermitted):  # orders:write moves orders, never refunds them
        orders.record_refund(order, orders.RefundRequest(amount=Decimal("1")),
                             actor=key_actor(writer))
    with pytest.raises(ActionNotPermitted):  # catalog:write does not count stock
        set_counted_levels([CountedLevel(sku="MUG", quantity=3)], actor=key_actor(catalog))
    orders.create_shipment(order, orders.ShipmentRequest(), actor=key_actor(writer))
    assert fresh(order).fulfilment_status == FulfilmentStatus.SHIPPED
    entry = AuditEntry.objects.get(action=AuditAction.ORDER_SHIPPED)
    assert (entry.actor, entry.actor_label) == (None, writer.label)
    assert set(permissions.SCOPE_PERMISSIONS) == set(Scope.values)


def test_the_api_answers_a_refusal_from_a_service_with_its_403_shape(client, monkeypatch):
    from shop_api.routers import integration_orders

    key, raw = create_api_key(name="WMS", scopes=[Scope.ORDERS_WRITE, Scope.ORDERS_READ])
    order = paid()
    # As if the route's own scope check had been forgotten: the service still refuses.
    monkeypatch.setattr(integration_orders, "key_actor",
                        lambda key: Actor(label=key.label, scopes=frozenset({"orders:read"})))
    response = client.post(f"/api/v1/integrations/orders/{order.number}/shipments", {},
                           content_type="application/json", HTTP_X_API_KEY=raw)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "may not ship orders" in response.json()["detail"]
    assert fresh(order).fulfilment_status == FulfilmentStatus.UNFULFILLED


# --- What each role sees -------------------------------------------------------------------------


SIDEBAR = {
    CATALOG: {"Products", "Variants and SKUs", "Categories", "Stock", "Low stock",
              "Stock movements", "Warehouses", "Imports", "Exports"},
    CLERK: {"Orders", "Products", "Variants and SKUs", "Stock", "Low stock", "Stock movements",
            "Warehouses"},
    SUPPORT: {"Orders", "Customers and staff", "Addresses", "Notifications"},
    FINANCE: {"Orders", "Payments", "Payment events", "Products", "Variants and SKUs",
              "Exports", "Customers and staff"},
}


@pytest.mark.parametrize("role", list(SIDEBAR))
def test_the_sidebar_shows_a_role_only_what_it_can_use_and_every_link_opens(role, client):
    user = member(role)
    request = RequestFactory().get("/admin/")
    request.user = user
    items = [item for group in sidebar_navigation(request) for item in group["items"]]
    assert {str(item["title"]) for item in items} - {"Dashboard", "Reports"} == SIDEBAR[role]
    client.force_login(user)
    paid()  # an order, so the lists have a row to show
    for item in items:
        assert client.get(item["link"]).status_code == 200, item["link"]


def test_the_owner_sees_everything_the_audit_page_included(client):
    client.force_login(member(OWNER))
    request = RequestFactory().get("/admin/")
    request.user = member(OWNER, "owner-2")
    titles = {str(item["title"]) for group in sidebar_navigation(request)
              for item in group["items"]}
    assert {"Audit", "Groups", "API keys", "Plugins", "Payments", "Orders"} <= titles
    assert client.get("/admin/audit/auditentry/").status_code == 200
    for role in (CATALOG, CLERK, SUPPORT, FINANCE):
        client.force_login(member(role, f"{role}-audit"))
        assert client.get("/admin/audit/auditentry/").status_code == 403


def test_support_edits_customers_but_never_staff_access(client, django_user_model):
    support = member(SUPPORT)
    owner = member(OWNER)
    customer = django_user_model.objects.create_user("c@example.com", "c@example.com")
    client.force_login(support)
    page = client.get(f"/admin/auth/user/{customer.pk}/change/").content.decode()
    assert 'name="_save"' in page and 'name="email"' in page
    assert 'name="is_staff"' not in page and 'name="groups"' not in page
    assert 'name="is_superuser"' not in page
    # A staff account is read-only to them; a POST is refused.
    page = client.get(f"/admin/auth/user/{owner.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    assert client.post(f"/admin/auth/user/{owner.pk}/change/", {}).status_code == 403
    assert client.post(f"/admin/auth/user/{owner.pk}/password/", {
        "password1": "x-new-pass-123", "password2": "x-new-pass-123"}).status_code == 403
    # The owner gives roles, but only a superuser makes superusers.
    client.force_login(owner)
    page = client.get(f"/admin/auth/user/{support.pk}/change/").content.decode()
    assert 'name="groups"' in page and 'name="is_superuser"' not in page


def test_the_customer_export_leaves_staff_out_and_defuses_formulas(client):
    finance = member(FINANCE)
    customer = _customer()
    client.force_login(finance)
    response = bulk(client, "/admin/auth/user/", "export_customers", customer.pk, finance.pk)
    text = response.content.decode()
    assert text.splitlines()[0].startswith("email,first_name,last_name,phone")
    assert "'=HYPERLINK(1)" in text and "finance" not in text
    entry = AuditEntry.objects.get(action=AuditAction.CUSTOMERS_EXPORTED)
    assert (entry.actor, entry.data) == (finance, {"count": 1})


# --- The audit page -------------------------------------------------------------------------------


def test_the_audit_page_lists_money_stock_plugin_and_key_changes_with_who(client):
    owner = member(OWNER)
    client.force_login(owner)
    order = paid()
    client.post(f"{ORDERS}{order.pk}/refund/", {"amount": "50.00", "reason": "late"})
    stock = _stock()
    client.post(f"/admin/inventory/stock/{stock.pk}/adjust/", {
        "mode": "add", "quantity": "-3", "reason": "damaged", "reference": "count-7",
        "note": ""})
    update_plugin_config(identifier="stripe", active=False, changes={
        "secret_key": "sk_test_VERYSECRET123", "mode": "test"},
        actor=Actor(user=owner))
    client.post("/admin/integrations/apikey/add/", {"name": "ERP", "scopes": ["stock:write"]})
    key = ApiKey.objects.get(name="ERP")
    revoke_api_keys(key_ids=[key.pk], actor=Actor(user=owner))
    # A job's and a customer's changes are not staff actions: not listed.
    orders.cancel_order(unpaid(), actor=Actor(label="payment window expired"))

    response = client.get("/admin/audit/auditentry/")
    html = response.content.decode()
    listed = [(e.get_action_display(), e.actor_label) for e in response.context["cl"].result_list]
    assert listed == [("API key revoked", "owner"), ("API key created", "owner"),
                      ("Plugin settings changed", "owner"), ("Stock adjusted", "owner"),
                      ("Refund recorded", "owner")]
    for text in (f"#{order.number}", "Refunded USD 50.00: late", "TEE-S (Tee) in",
                 "-3 (Damaged or lost): on hand now 197. Reference count-7.", "stripe",
                 "Settings changed: secret_key (secret), mode.", f"ERP ({key.prefix}…)",
                 "Created with the scopes stock:write.", "Revoked."):
        assert text in html, text
    assert "VERYSECRET" not in html
    entries = AuditEntry.objects.all()
    assert {e.action for e in entries} == {
        AuditAction.ORDER_REFUNDED, AuditAction.STOCK_ADJUSTED, AuditAction.PLUGIN_CHANGED,
        AuditAction.API_KEY_CREATED, AuditAction.API_KEY_REVOKED}
    assert all(e.actor == owner and e.actor_label == "owner" for e in entries)
    plugin = entries.get(action=AuditAction.PLUGIN_CHANGED)
    assert plugin.data == {"settings": ["mode"], "secrets": ["secret_key"], "active": False}
    assert "VERYSECRET" not in str(plugin.data) + plugin.summary
    detail = client.get(f"/admin/audit/auditentry/{plugin.pk}/change/").content.decode()
    assert "secret_key" in detail and "VERYSECRET" not in detail

    # Filters and search.
    only_refunds = client.get("/admin/audit/auditentry/?action=order.refunded")
    assert [e.summary for e in only_refunds.context["cl"].result_list] == [
        "Refunded USD 50.00: late"]
    by_owner = client.get(f"/admin/audit/auditentry/?who=user:{owner.pk}")
    assert len(by_owner.context["cl"].result_list) == 5
    stock_only = client.get("/admin/audit/auditentry/?object_type=inventory.stock")
    assert [e.action for e in stock_only.context["cl"].result_list] == [
        AuditAction.STOCK_ADJUSTED]
    found = client.get(f"/admin/audit/auditentry/?q={order.number}")
    assert [e.action for e in found.context["cl"].result_list] == [AuditAction.ORDER_REFUNDED]
    # Read-only.
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.post(f"/admin/audit/auditentry/{plugin.pk}/delete/",
                       {"post": "yes"}).status_code == 403


def test_a_refused_action_leaves_no_audit_entry_and_a_key_action_names_the_key(client):
    finance = member(FINANCE)
    order = paid()
    with pytest.raises(orders.OrderError):
        payments.refund_order(order, orders.RefundRequest(amount=Decimal("999999")),
                              actor=Actor(user=finance))
    assert not AuditEntry.objects.exists()
    key, _ = create_api_key(name="WMS", scopes=[Scope.STOCK_WRITE])
    set_counted_levels([CountedLevel(sku="MUG", quantity=7)], actor=key_actor(key))
    entry = AuditEntry.objects.get(action=AuditAction.STOCK_LEVELS_SET)
    assert entry.actor_label == key.label and entry.data["changed"] == 1


# --- Upgrading: nobody loses what they could do ---------------------------------------------------


def test_the_upgrade_gives_holders_of_the_old_permissions_the_new_ones(django_user_model):
    from importlib import import_module

    migration = import_module("backoffice.audit.migrations.0002_carry_over_permissions")
    clerks = Group.objects.create(name="Old clerks")
    clerks.permissions.add(Permission.objects.get(codename="change_order"))
    someone = django_user_model.objects.create_user("old-timer", is_staff=True)
    someone.user_permissions.add(Permission.objects.get(codename="change_notification"))
    state = MigrationExecutor(connection).loader.project_state(
        ("audit", "0002_carry_over_permissions"))

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection
    migration.carry_over(state.apps, editor)

    got = {p.codename for p in clerks.permissions.all()}
    assert {"ship_order", "deliver_order", "cancel_order", "refund_order", "mark_order_paid",
            "add_order_note", "change_payment"} <= got
    assert {p.codename for p in someone.user_permissions.all()} == {
        "change_notification", "resend_notification"}


def test_switching_a_plugin_off_is_recorded_with_who(client):
    owner = member(OWNER)
    client.force_login(owner)
    plugin = PluginConfig.objects.get(identifier="flat_rate_shipping")
    response = client.post(f"/admin/plugins/pluginconfig/{plugin.pk}/change/", {
        "setting__label": "", "setting__rate": "", "setting__free_over": "",
        "setting__countries": ""})
    assert response.status_code == 302
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.summary) == (
        AuditAction.PLUGIN_DEACTIVATED, owner, "Switched off.")
    # Saving again with nothing changed records nothing.
    client.post(f"/admin/plugins/pluginconfig/{plugin.pk}/change/", {
        "setting__label": "", "setting__rate": "", "setting__free_over": "",
        "setting__countries": ""})
    assert AuditEntry.objects.count() == 1
