"""The catalog: a category tree, products and their variants, images.

Prices live on variants, as ``Decimal`` in the store currency (``backoffice.money``). Every product
has at least one variant (a product without options has one "default" variant). Stock is kept per
variant and warehouse in ``backoffice.inventory``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from mptt.models import MPTTModel, TreeForeignKey

from backoffice.money import MONEY_FIELD_KWARGS

CATEGORY_PATH_SEPARATOR = "/"


class Category(MPTTModel):
    """A node of the category tree. ``path`` is the slugs from the root, e.g. ``men/shirts``."""

    parent = TreeForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=200, allow_unicode=True)
    path = models.CharField(
        _("path"),
        max_length=1000,
        unique=True,
        editable=False,
        help_text=_("Slugs from the root, separated by '/'; kept up to date on save and move."),
    )
    description = models.TextField(_("description"), blank=True)
    image = models.ImageField(_("image"), upload_to="categories/", blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    position = models.PositiveIntegerField(
        _("position"), default=0, help_text=_("Order among siblings; lower comes first.")
    )
    google_category_id = models.PositiveIntegerField(
        _("Google product category id"), null=True, blank=True, unique=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class MPTTMeta:
        order_insertion_by = ["position", "name"]

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "slug"], name="category_slug_unique_among_siblings"
            ),
            models.UniqueConstraint(
                fields=["slug"],
                condition=Q(parent__isnull=True),
                name="category_root_slug_unique",
            ),
        ]
        indexes = [models.Index(fields=["tree_id", "lft"], name="category_tree_order")]

    def __str__(self) -> str:
        return self.name

    def build_path(self) -> str:
        if self.parent_id is None:
            return self.slug
        # From the database: an instance of the parent in memory may predate a rename above it.
        parent_path = Category.objects.values_list("path", flat=True).get(pk=self.parent_id)
        return f"{parent_path}{CATEGORY_PATH_SEPARATOR}{self.slug}"

    def save(self, *args, **kwargs) -> None:
        """Keep ``path`` true for this node and, when it changed, for every descendant."""
        old_path = (
            Category.objects.filter(pk=self.pk).values_list("path", flat=True).first()
            if self.pk
            else None
        )
        self.path = self.build_path()
        super().save(*args, **kwargs)
        if old_path and old_path != self.path:
            from backoffice.catalog.services import rewrite_descendant_paths

            rewrite_descendant_paths(self, old_prefix=old_path)


class Product(models.Model):
    """What a customer looks at: a name, a description, images; bought through its variants."""

    name = models.CharField(_("name"), max_length=255)
    slug = models.SlugField(_("slug"), max_length=255, unique=True, allow_unicode=True)
    description = models.TextField(_("description"), blank=True)
    brand = models.CharField(_("brand"), max_length=120, blank=True, db_index=True)
    product_type = models.CharField(_("type"), max_length=120, blank=True)
    category = models.ForeignKey(
        Category,
        verbose_name=_("primary category"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="products",
    )
    extra_categories = models.ManyToManyField(
        Category, verbose_name=_("extra categories"), blank=True, related_name="extra_products"
    )
    attributes = models.JSONField(
        _("attributes"), default=dict, blank=True, help_text=_('e.g. {"material": "cotton"}')
    )
    tags = models.JSONField(_("tags"), default=list, blank=True)
    is_active = models.BooleanField(
        _("published"), default=True, help_text=_("Shown in the storefront.")
    )
    is_featured = models.BooleanField(_("featured"), default=False)
    seo_title = models.CharField(_("SEO title"), max_length=255, blank=True)
    seo_description = models.CharField(_("SEO description"), max_length=320, blank=True)
    google_category_id = models.PositiveIntegerField(
        _("Google product category id"), null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Listing columns: copies of what the variants, stock and reviews say, kept true by
    # ``backoffice.catalog.services.refresh_listings``, so a storefront can filter and sort 100k
    # products by price, stock and rating through an index instead of aggregating per request.
    price_min = models.DecimalField(
        _("lowest price"), **MONEY_FIELD_KWARGS, null=True, blank=True, editable=False
    )
    price_max = models.DecimalField(
        _("highest price"), **MONEY_FIELD_KWARGS, null=True, blank=True, editable=False
    )
    is_in_stock = models.BooleanField(_("in stock"), default=False, editable=False)
    rating_average = models.DecimalField(
        _("rating"), max_digits=3, decimal_places=2, default=0, editable=False
    )
    rating_count = models.PositiveIntegerField(_("reviews"), default=0, editable=False)
    # The last import that created or changed the product (its variants or stock included): the
    # sold-out job leaves a product imported within the hour alone, and says so on that import.
    imported_at = models.DateTimeField(_("last imported"), null=True, blank=True, editable=False)
    import_reference = models.CharField(
        _("imported by"), max_length=120, blank=True, editable=False,
        help_text=_("The import that last wrote it, e.g. 'import #12'."),
    )

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        indexes = [
            # With the price: a category's listing with a price floor is counted from the
            # index alone (one of 12k products: 16 ms -> 3 ms at 100k products).
            models.Index(fields=["is_active", "category", "price_min"],
                         name="product_active_category_price"),
            models.Index(fields=["is_active", "-created_at", "-id"], name="product_active_newest"),
            models.Index(fields=["is_active", "name", "id"], name="product_active_name"),
            models.Index(fields=["is_active", "price_min", "id"], name="product_active_price"),
            models.Index(
                fields=["is_active", "-price_min", "-id"], name="product_active_price_desc"
            ),
            models.Index(
                fields=["is_active", "-rating_average", "-id"], name="product_active_rating"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class StorefrontAnswer(models.Model):
    """A product as the storefront API shows it, kept as JSON text: ``summary`` (an item of a
    listing page) and ``detail`` (``GET /products/{slug}``). A listing page is then one indexed
    query and the kept texts joined, not two dozen products and their variants read, typed and
    serialised on every request (``backoffice.catalog.documents``).

    NULL means "not kept": every write that changes what they show (the product, its variants,
    images, stock status, reviews, its category's name or place) sets them to NULL and bumps
    ``generation``; the next read builds them again, and writes them back only if
    ``generation`` has not moved meanwhile (so a read never puts back what a write just made
    stale). A test pins them to what the live rows say after every kind of write."""

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, primary_key=True, related_name="storefront_answer"
    )
    # NULL: not kept (also what a product without a row reads through the join).
    summary = models.TextField(null=True, editable=False)  # noqa: DJ001
    detail = models.TextField(null=True, editable=False)  # noqa: DJ001
    generation = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = _("kept storefront answer")
        verbose_name_plural = _("kept storefront answers")

    def __str__(self) -> str:
        return f"listing of product {self.product_id}"


class ListingEstimate(models.Model):
    """PostgreSQL's estimate of how many products a large listing holds (``storefront.
    listing_count``), kept per set of filters so that a page of it is one query, not that
    query and an ``EXPLAIN``. Kept only for filters of bounded values (a category, in stock,
    featured: ``storefront.listing_key``), and only on PostgreSQL.

    Every statement that writes products or categories draws the next value of the sequence
    ``catalog_listing_writes`` (a trigger, migration 0010: whoever writes, raw SQL and
    ``COPY`` included); an estimate is good while ``generation`` is the sequence's last value,
    read in the same query as the page. The estimate is the planner's (its statistics), so
    it is as fresh as they are."""

    key = models.TextField(primary_key=True)
    estimate = models.BigIntegerField()
    generation = models.BigIntegerField()

    class Meta:
        verbose_name = _("kept listing estimate")
        verbose_name_plural = _("kept listing estimates")

    def __str__(self) -> str:
        return f"{self.key}: about {self.estimate}"


class ListingAnchors(models.Model):
    """Which products stand every ``storefront.ANCHOR_EVERY`` places in a large listing, in
    one ordering: their ids, a JSON list (the ``ANCHOR_EVERY``-th, 2 x ``ANCHOR_EVERY``-th...).
    A page asked by number deep in the listing then starts its index walk just after the
    anchor before it, as a cursor does, instead of skipping every product before it
    (``OFFSET`` walked 47k-95k index entries for the second half of 95k products). Each
    server process reads them once with their sort keys and holds them (``storefront._anchors``)
    until a write. Kept for the same listings as ``ListingEstimate`` and made stale the same way
    (``generation``), since any write may move a product's place."""

    key = models.TextField(primary_key=True)
    product_ids = models.TextField()
    generation = models.BigIntegerField()

    class Meta:
        verbose_name = _("kept listing anchors")
        verbose_name_plural = _("kept listing anchors")

    def __str__(self) -> str:
        return f"anchors of {self.key}"


class ProductImage(models.Model):
    """An image of a product: an uploaded file, or a URL it was imported from."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(_("image"), upload_to="products/", blank=True)
    source_url = models.URLField(_("source URL"), max_length=1000, blank=True)
    alt_text = models.CharField(_("alt text"), max_length=255, blank=True)
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("product image")
        verbose_name_plural = _("product images")
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(image="") | ~Q(source_url=""), name="product_image_has_a_source"
            ),
        ]

    def __str__(self) -> str:
        return self.alt_text or self.source_url or self.image.name

    @property
    def url(self) -> str:
        return self.image.url if self.image else self.source_url

    def clean(self) -> None:
        if not self.image and not self.source_url:
            raise ValidationError(_("Upload an image or give its URL."))


def sells_without_stock(prefix: str = "") -> Q:
    """Variants (``prefix``: the path to one, e.g. ``"variant__"``) sellable whatever their stock
    says: not tracked, or on backorder. The one definition the selectors, the listing columns,
    the sold-out job and checkout share."""
    return Q(**{f"{prefix}track_inventory": False}) | Q(**{f"{prefix}allow_backorder": True})


class Variant(models.Model):
    """A buyable version of a product (a size, a colour): SKU, price and stock.

    Stock is *tracked* by default: the variant sells what its stock rows have available, and
    checkout allocates from them. ``track_inventory`` off (Shopify's blank inventory tracker,
    WooCommerce's unmanaged stock) makes it always available: nothing is allocated, shipped or
    restocked from stock rows for it, and it is never sold out. ``allow_backorder`` (Shopify's
    inventory policy "continue", WooCommerce's backorders) keeps a tracked variant selling once
    its stock runs out: what is available is allocated, the rest is backordered and taken from
    the shelf when it ships.
    """

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="variants")
    sku = models.CharField(_("SKU"), max_length=64, unique=True)
    name = models.CharField(
        _("name"), max_length=255, blank=True, help_text=_("e.g. 'M / Red'; empty for a default")
    )
    option_values = models.JSONField(
        _("options"), default=dict, blank=True, help_text=_('e.g. {"Size": "M", "Colour": "Red"}')
    )
    price = models.DecimalField(
        _("price"), **MONEY_FIELD_KWARGS, validators=[MinValueValidator(0)]
    )
    compare_at_price = models.DecimalField(
        _("compare-at price"),
        **MONEY_FIELD_KWARGS,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_("The 'was' price shown struck through; at least the price."),
    )
    cost_price = models.DecimalField(
        _("cost price"), **MONEY_FIELD_KWARGS, null=True, blank=True,
        validators=[MinValueValidator(0)],
    )
    barcode = models.CharField(_("barcode"), max_length=64, blank=True, db_index=True)
    weight_grams = models.PositiveIntegerField(_("weight (g)"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    track_inventory = models.BooleanField(
        _("track stock"), default=True,
        help_text=_("Off: its stock is not counted (a service, made to order, unmanaged stock): "
                    "always available, never allocated, never sold out."),
    )
    allow_backorder = models.BooleanField(
        _("sell when out of stock"), default=False,
        help_text=_("Backorders: keep selling once the tracked stock runs out; what the shelf "
                    "has is still allocated first."),
    )
    position = models.PositiveIntegerField(_("position"), default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="variant_price_not_negative"),
            models.CheckConstraint(
                condition=Q(compare_at_price__isnull=True)
                | Q(compare_at_price__gte=models.F("price")),
                name="variant_compare_at_not_below_price",
            ),
            models.CheckConstraint(
                condition=Q(cost_price__isnull=True) | Q(cost_price__gte=0),
                name="variant_cost_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["product", "price"], name="variant_product_price"),
            # The dashboard's low-stock count reads the variants whose stock is watched.
            models.Index(
                fields=["id"], condition=Q(is_active=True, track_inventory=True),
                name="reports_variant_watched",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.name} ({self.name})" if self.name else self.sku

    @property
    def sells_without_stock(self) -> bool:
        """Sellable with no stock available: its stock is not tracked, or backorders are on."""
        return not self.track_inventory or self.allow_backorder

    def clean(self) -> None:
        if (
            self.compare_at_price is not None
            and self.price is not None
            and self.compare_at_price < self.price
        ):
            raise ValidationError(
                {"compare_at_price": _("The compare-at price must not be below the price.")}
            )
