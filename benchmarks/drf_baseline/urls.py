"""``/api/v1/products``: a ModelViewSet, nested ModelSerializers, django-filter and ordering.

It answers the same fields as our listing (the product's listing columns, its variants with price,
discount and availability, its images), written the straightforward way: every nested serializer
reads its rows lazily, so each product costs a query for its variants and one for its images, and
each variant one for its stock.
"""

from decimal import Decimal

import django_filters
from django.urls import include, path
from rest_framework import routers, serializers, viewsets

from backoffice.catalog.models import Category, Product, ProductImage, Variant


class ProductImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductImage
        fields = ["id", "image", "source_url", "alt_text", "position"]


class VariantSerializer(serializers.ModelSerializer):
    discount_percentage = serializers.SerializerMethodField()
    availability = serializers.SerializerMethodField()

    class Meta:
        model = Variant
        fields = ["id", "sku", "name", "option_values", "price", "compare_at_price",
                  "discount_percentage", "availability"]

    def get_discount_percentage(self, variant: Variant) -> Decimal | None:
        price, compare_at = variant.price, variant.compare_at_price
        if not compare_at or compare_at <= price:
            return None
        return ((compare_at - price) * 100 / compare_at).quantize(Decimal("0.01"))

    def get_availability(self, variant: Variant) -> str:
        available = threshold = 0
        for stock in variant.stocks.all():
            available += stock.quantity - stock.quantity_allocated
            threshold += stock.low_stock_threshold
        if available <= 0:
            return "out"
        return "low" if available <= threshold else "in_stock"


class ProductSerializer(serializers.ModelSerializer):
    variants = VariantSerializer(many=True, read_only=True)
    images = ProductImageSerializer(many=True, read_only=True)

    class Meta:
        model = Product
        fields = ["id", "slug", "name", "brand", "category", "price_min", "price_max",
                  "is_in_stock", "is_featured", "rating_average", "rating_count", "variants",
                  "images"]


class ProductFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(method="in_category")
    min_price = django_filters.NumberFilter(field_name="price_min", lookup_expr="gte")
    max_price = django_filters.NumberFilter(field_name="price_min", lookup_expr="lte")

    class Meta:
        model = Product
        fields = ["brand", "is_featured", "is_in_stock"]

    def in_category(self, queryset, name, value):
        """A category path; products in it and below it."""
        category = Category.objects.filter(path=value.strip("/"), is_active=True).first()
        if category is None:
            return queryset.none()
        return queryset.filter(category__in=category.get_descendants(include_self=True))


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Product.objects.filter(is_active=True)
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    ordering_fields = ["price_min", "created_at", "name", "rating_average"]
    ordering = ["-created_at", "-id"]
    lookup_field = "slug"


router = routers.DefaultRouter(trailing_slash=False)
router.register("products", ProductViewSet)

urlpatterns = [path("api/v1/", include(router.urls))]
