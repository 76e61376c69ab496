"""The admin: unfold's look with the store's branding, a sidebar by permission, bounded queries."""

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from django_q.models import Failure, Schedule
from django_q.tasks import schedule

pytestmark = pytest.mark.django_db


@override_settings(UNFOLD={"SITE_TITLE": "Duka Back Office", "SITE_HEADER": "Duka Back Office"})
def test_login_page_is_branded(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "Duka Back Office" in response.content.decode()
    # unfold's templates, not Django's default admin look.
    assert any("unfold" in t.name for t in response.templates if t.name)


def test_root_sends_visitors_to_the_admin(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_anonymous_admin_visit_goes_to_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_dashboard_shows_the_sidebar_sections(staff_client, django_assert_max_num_queries):
    # The dashboard's budget (DESIGN.md): sales, the counts that need someone and low stock
    # included (tests/test_reports.py checks them).
    with django_assert_max_num_queries(12):
        response = staff_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    for label in ("Scheduled jobs", "Finished jobs", "Failed jobs", "Customers and staff",
                  "Notifications", "Message templates", "Staff alerts"):
        assert label in html


def test_sidebar_shows_only_what_the_staff_member_may_view(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw-123-long", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_schedule"))
    client.force_login(clerk)
    html = client.get("/admin/").content.decode()
    assert "Scheduled jobs" in html
    assert "Failed jobs" not in html
    assert "Customers and staff" not in html
    assert "Message templates" not in html


def test_failed_jobs_badge_counts_failures(staff_client):
    Failure.objects.create(
        id="a" * 32, name="probe", func="math.floor", started="2026-01-01T00:00Z",
        stopped="2026-01-01T00:00Z", success=False, result="boom",
    )
    html = staff_client.get("/admin/").content.decode()
    assert "Failed jobs" in html
    assert html.count(BADGE_MARKUP) == 1
    assert ">1<" in html.replace(" ", "").replace("\n", "")


@pytest.mark.parametrize("url", [
    "/admin/django_q/schedule/",
    "/admin/django_q/success/",
    "/admin/django_q/failure/",
    "/admin/django_q/ormq/",
    "/admin/auth/user/",
    "/admin/auth/group/",
    "/admin/auth/user/add/",
    "/admin/integrations/apikey/",
    "/admin/integrations/integrationwrite/",
    "/admin/integrations/integrationwrite/?endpoint=products",
])
def test_changelists_render_with_bounded_queries(staff_client, url, django_assert_max_num_queries):
    schedule("math.floor", 1.5, name="nightly probe", schedule_type=Schedule.DAILY)
    with django_assert_max_num_queries(12):
        response = staff_client.get(url)
    assert response.status_code == 200


def test_user_changelist_queries_do_not_grow_with_rows(
    staff_client, django_user_model, django_assert_max_num_queries
):
    django_user_model.objects.bulk_create(
        django_user_model(username=f"customer{i}", email=f"c{i}@example.com") for i in range(60)
    )
    with django_assert_max_num_queries(10):
        assert staff_client.get("/admin/auth/user/").status_code == 200


BADGE_MARKUP = "h-[18px] leading-[18px]"  # unfold's badge element


def test_no_badge_is_drawn_when_nothing_failed(staff_client):
    html = staff_client.get("/admin/").content.decode()
    assert "Failed jobs" in html
    assert BADGE_MARKUP not in html
