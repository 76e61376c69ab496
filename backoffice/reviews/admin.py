from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from unfold.admin import ModelAdmin
from unfold.decorators import action

from backoffice.reviews.models import Review
from backoffice.reviews.services import update_review


@admin.register(Review)
class ReviewAdmin(ModelAdmin):
    list_display = ["product", "user", "rating", "verified_purchase", "is_published", "created_at"]
    list_filter = ["rating", "verified_purchase", "is_published"]
    search_fields = ["product__name", "user__email", "comment"]
    list_select_related = ["product", "user"]
    readonly_fields = ["product", "user", "rating", "comment", "verified_purchase", "created_at"]
    actions = ["unpublish", "publish"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        # Through the service, so the product's rating summary follows.
        update_review(review=obj, is_published=obj.is_published)

    @action(description=_("Unpublish the selected reviews"), permissions=["change"])
    def unpublish(self, request, queryset) -> None:
        for review in queryset.filter(is_published=True):
            update_review(review=review, is_published=False)

    @action(description=_("Publish the selected reviews"), permissions=["change"])
    def publish(self, request, queryset) -> None:
        for review in queryset.filter(is_published=False):
            update_review(review=review, is_published=True)
