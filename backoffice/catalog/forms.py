"""Admin forms of the catalog: the category, product and variant forms, and the forms of the
bulk actions."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils.translation import gettext_lazy as _
from unfold.widgets import (
    UnfoldAdminDecimalFieldWidget,
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSelectWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanSwitchWidget,
)

from backoffice.catalog.models import Category, Product, Variant
from backoffice.catalog.widgets import (
    KeyValueField,
    KeyValueWidget,
    TagsField,
    keep_stored_values,
)
from backoffice.inventory.models import MovementReason, Warehouse


class CategoryAdminForm(forms.ModelForm):
    """Refuses a parent inside the category's own subtree before mptt would raise on save."""

    class Meta:
        model = Category
        fields = [
            "name", "slug", "parent", "position", "is_active", "description", "image",
            "google_category_id",
        ]

    def clean_parent(self) -> Category | None:
        parent = self.cleaned_data.get("parent")
        instance = self.instance
        inside_itself = parent is not None and instance.pk is not None and (
            parent.pk == instance.pk or parent.is_descendant_of(instance)
        )
        if inside_itself:
            raise forms.ValidationError(
                _("A category cannot move under itself or its own descendants.")
            )
        return parent


# As the API takes them (Shopify-style: three options a variant, and the exports write three).
# A variant imported with more (WooCommerce has up to nine) keeps them: the form only refuses
# going beyond three, or beyond what it already has.
MAX_OPTIONS = 3
MAX_TAG_LENGTH = 100


class OptionsField(KeyValueField):
    default_error_messages = {
        "no_value": _('Each option needs a name and a value: "%(name)s" has no value.'),
        "no_name": _('Each option needs a name and a value: the value "%(value)s" has no name.'),
        "duplicate": _('Each option name can be used once: "%(name)s" is there twice.'),
        "too_many": _("A variant can have at most %(max)d options."),
    }


class AttributesField(KeyValueField):
    default_error_messages = {
        "no_value": _('Each attribute needs a name and a value: "%(name)s" has no value.'),
        "no_name": _(
            'Each attribute needs a name and a value: the value "%(value)s" has no name.'
        ),
        "duplicate": _('Each attribute name can be used once: "%(name)s" is there twice.'),
    }


class ProductAdminForm(forms.ModelForm):
    """Attributes as name/value rows and tags as comma-separated text, instead of JSON."""

    attributes = AttributesField(
        label=_("Attributes"),
        widget=KeyValueWidget(
            name_label=_("Attribute"), value_label=_("Value"), add_label=_("Add an attribute"),
            name_placeholder=_("material"), value_placeholder=_("cotton"),
        ),
        help_text=_("One attribute a row, e.g. material: cotton. Clear a row to remove it."),
    )
    tags = TagsField(
        label=_("Tags"),
        max_tag_length=MAX_TAG_LENGTH,
        help_text=_("Separate tags with commas, e.g. summer, linen."),
    )

    class Meta:
        model = Product
        fields = ["attributes", "tags"]

    def clean_attributes(self) -> dict:
        return keep_stored_values(self.cleaned_data["attributes"], self.instance.attributes)


class VariantForm(forms.ModelForm):
    """Options as name/value rows instead of JSON; a SKU input wide enough to read."""

    option_values = OptionsField(
        label=_("Options"),
        max_rows=MAX_OPTIONS,
        widget=KeyValueWidget(
            name_label=_("Option"), value_label=_("Value"), add_label=_("Add an option"),
            name_placeholder=_("Size"), value_placeholder=_("M"), compact=True,
        ),
        help_text=_("e.g. Size: M, Colour: Red; at most 3. Clear a row to remove it."),
    )

    class Meta:
        model = Variant
        fields = ["sku", "option_values"]
        widgets = {"sku": UnfoldAdminTextInputWidget(attrs={"class": "bo-sku-input"})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance.option_values
        if isinstance(stored, dict) and len(stored) > MAX_OPTIONS:
            field = self.fields["option_values"]
            field.max_rows = field.widget.max_rows = len(stored)

    def clean_option_values(self) -> dict:
        return keep_stored_values(self.cleaned_data["option_values"], self.instance.option_values)


class _CategoryChoiceField(forms.ModelChoiceField):
    """Categories in tree order, indented by depth (one query)."""

    def __init__(self, **kwargs) -> None:
        queryset = Category.objects.order_by("tree_id", "lft").only("name", "level")
        super().__init__(queryset=queryset, widget=UnfoldAdminSelectWidget, **kwargs)

    def label_from_instance(self, obj: Category) -> str:
        return f"{'— ' * obj.level}{obj.name}"


class PercentagePriceChangeForm(forms.Form):
    percentage = forms.DecimalField(
        label=_("Change by (%)"),
        max_digits=6,
        decimal_places=2,
        widget=UnfoldAdminDecimalFieldWidget,
        help_text=_("-10 cuts every price by 10%, 5 raises it by 5%. Rounded to the cent."),
    )
    include_compare_at = forms.BooleanField(
        label=_("Change compare-at prices too"),
        required=False,
        widget=UnfoldBooleanSwitchWidget,
        help_text=_("Off: a cut puts the products on sale against their current price."),
    )

    def clean_percentage(self) -> Decimal:
        percentage = self.cleaned_data["percentage"]
        if percentage == 0:
            raise forms.ValidationError(_("A change of 0% changes nothing."))
        return percentage


class MoveProductsForm(forms.Form):
    category = _CategoryChoiceField(label=_("New primary category"))


class MoveCategoriesForm(forms.Form):
    parent = _CategoryChoiceField(
        label=_("New parent"), required=False, empty_label=_("(top level)")
    )
    position = forms.IntegerField(
        label=_("Position"),
        required=False,
        min_value=0,
        widget=UnfoldAdminIntegerFieldWidget,
        help_text=_("Order among the new siblings; empty keeps the current one."),
    )


ADJUSTMENT_REASONS = [
    (reason.value, reason.label)
    for reason in (
        MovementReason.ADJUSTMENT,
        MovementReason.COUNT,
        MovementReason.RECEIVED,
        MovementReason.DAMAGED,
        MovementReason.RETURN,
    )
]


class AdjustStockForm(forms.Form):
    """A change of on-hand stock: by a difference, or to a counted level."""

    ADD = "add"
    SET = "set"

    mode = forms.ChoiceField(
        label=_("Change"),
        choices=[(ADD, _("Add or remove (+/-)")), (SET, _("Set to a counted level"))],
        widget=UnfoldAdminSelectWidget,
    )
    quantity = forms.IntegerField(label=_("Quantity"), widget=UnfoldAdminIntegerFieldWidget)
    reason = forms.ChoiceField(
        label=_("Reason"), choices=ADJUSTMENT_REASONS, widget=UnfoldAdminSelectWidget
    )
    reference = forms.CharField(
        label=_("Reference"), max_length=120, required=False, widget=UnfoldAdminTextInputWidget
    )
    note = forms.CharField(
        label=_("Note"), max_length=255, required=False, widget=UnfoldAdminTextInputWidget
    )

    def clean(self) -> dict:
        data = super().clean()
        if data.get("mode") == self.SET and (data.get("quantity") or 0) < 0:
            self.add_error("quantity", _("A counted level cannot be negative."))
        if data.get("mode") == self.ADD and data.get("quantity") == 0:
            self.add_error("quantity", _("Adding 0 changes nothing."))
        return data


class VariantAdjustStockForm(AdjustStockForm):
    """From the variant list: the warehouse is chosen (the default one unless told)."""

    field_order = ["warehouse"]

    warehouse = forms.ModelChoiceField(
        label=_("Warehouse"),
        queryset=Warehouse.objects.filter(is_active=True),
        widget=UnfoldAdminSelectWidget,
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        default = next((w for w in self.fields["warehouse"].queryset if w.is_default), None)
        self.fields["warehouse"].initial = default
