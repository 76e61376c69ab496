"""The storefront's kept answers (``backoffice.catalog.documents``): always what the live rows
say, through every kind of write, and exactly what the API's schemas would serialise."""

from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.contrib.auth import get_user_model

from backoffice.catalog import documents
from backoffice.catalog.models import Category, Product, ProductImage, StorefrontAnswer, Variant
from backoffice.catalog.services import VariantPrices, set_products_featured, set_variant_prices
from backoffice.inventory.models import Stock
from backoffice.inventory.selectors import with_variant_stock
from backoffice.inventory.services import adjust_stock, allocate, release
from backoffice.reviews.services import create_review
from shop_api.routers.catalog import ProductOut, ProductSummary
from tests.test_api_catalog import make

pytestmark = pytest.mark.django_db


def live_answer(product: Product) -> dict:
    """``GET /products/{slug}`` as the schema serialises the live rows, read through other
    selectors than the documents' (per-variant subqueries, model instances, mptt)."""
    product = Product.objects.get(pk=product.pk)
    variants = with_variant_stock(product.variants.filter(is_active=True)).order_by(
        "position", "id")
    images = [{"url": i.url, "alt": i.alt_text or product.name}
              for i in ProductImage.objects.filter(product=product).order_by("position", "id")]
    trail = ([{"name": c.name, "slug": c.slug, "path": c.path}
              for c in product.category.get_ancestors(include_self=True)]
             if product.category else [])
    return ProductOut.model_validate({
        "slug": product.slug, "name": product.name, "brand": product.brand,
        "price_min": product.price_min, "price_max": product.price_max,
        "in_stock": product.is_in_stock, "featured": product.is_featured,
        "rating_average": product.rating_average, "rating_count": product.rating_count,
        "image": images[0] if images else None,
        "variants": [{
            "sku": v.sku, "name": v.name,
            "options": {str(k): str(x) for k, x in (v.option_values or {}).items()},
            "price": v.price, "compare_at_price": v.compare_at_price,
            "discount_percentage": documents.discount(v.price, v.compare_at_price),
            "availability": v.stock_status,
        } for v in variants],
        "description": product.description, "attributes": product.attributes,
        "tags": product.tags, "category": trail[-1] if trail else None,
        "breadcrumbs": trail, "images": images, "seo_title": product.seo_title or product.name,
        "seo_description": product.seo_description,
    }).model_dump(mode="json")


class Views:
    """Asks every published product's detail and the listing, each URL once (no response cache
    hit), and compares them with the live rows."""

    def __init__(self, client):
        self.client, self.n = client, 0

    def check(self):
        self.n += 1
        with cachalot_disabled():
            items = self.client.get(f"/api/v1/products?page_size=100&n={self.n}").json()["items"]
            published = Product.objects.filter(is_active=True).order_by("-created_at", "-id")
            summary_fields = set(ProductSummary.model_fields)
            for product, item in zip(published, items, strict=True):
                expected = live_answer(product)
                assert item == {k: v for k, v in expected.items() if k in summary_fields}
                detail = self.client.get(f"/api/v1/products/{product.slug}?n={self.n}")
                assert detail.json() == expected, product.name


@pytest.fixture
def shop():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=clothing)
    home = Category.objects.create(name="Home", slug="home")
    return {
        "polo": make("Blue Polo", shirts, ["25.00", "30.00"], stock=(9, 3),
                     attributes={"material": "cotton"}, tags=["summer"]),
        "lamp": make("Lampe à huile ☀", home, ["40.00"], stock=(20,)),
        "draft": make("Hidden Draft", home, ["10.00"], is_active=False),
        "shirts": shirts, "home": home,
    }


def test_kept_answers_are_the_schemas_serialisation_of_the_live_rows(client, shop):
    polo = shop["polo"]
    Variant.objects.filter(product=polo, price="25.00").update(compare_at_price="31.50")
    ProductImage.objects.create(product=polo, image="products/polo.jpg", alt_text="Front")
    ProductImage.objects.create(product=polo, source_url="https://cdn.example.test/p.jpg",
                                position=1)
    Product.objects.filter(pk=shop["lamp"].pk).update(rating_average="4.50", rating_count=2)
    Views(client).check()
    kept = StorefrontAnswer.objects.get(product=polo)
    assert kept.summary and kept.detail
    assert '"discount_percentage": "20.63"' in kept.summary
    assert '"url": "/media/products/polo.jpg"' in kept.detail


def test_every_kind_of_write_makes_the_kept_answer_stale(client, shop, admin_user):
    polo, lamp = shop["polo"], shop["lamp"]
    views = Views(client)
    views.check()
    small, large = polo.variants.order_by("position")

    set_variant_prices([VariantPrices(small.pk, Decimal("21.00"), Decimal("28.00"))])
    views.check()
    large.name = "Large"  # a save one at a time (the admin)
    large.save()
    views.check()
    adjust_stock(variant_id=small.pk, quantity_change=-5)  # 9 -> 4: low
    views.check()
    placements = allocate({large.pk: 3}, reference="order 1")  # 3 -> 0: out of stock
    views.check()
    release(placements, reference="order 1")
    views.check()
    stock = Stock.objects.get(variant=lamp.variants.get())
    stock.low_stock_threshold = 50  # now "low" with 20 available
    stock.save()
    views.check()
    image = ProductImage.objects.create(product=lamp, source_url="https://cdn.example.test/l.jpg")
    views.check()
    image.delete()
    views.check()
    shirts = shop["shirts"]
    shirts.name, shirts.slug = "Shirts & Tops", "tops"
    shirts.save()
    views.check()
    shirts.parent = shop["home"]
    shirts.save()
    views.check()
    create_review(user=get_user_model().objects.create_user("ann@example.test", "pw-12345678"),
                  product=lamp, rating=4)
    views.check()
    set_products_featured(product_ids=[lamp.pk], featured=True)
    views.check()
    polo.refresh_from_db()
    polo.name, polo.description = "Blue Polo Shirt", "Cotton piqué."
    polo.save()
    views.check()
    small.delete()
    views.check()


def test_a_sale_that_moves_no_stock_status_keeps_the_answer(client, shop):
    """A checkout's allocation makes a product's answer stale only where a variant moved
    between in stock, low and out: most sales do not, and the next view reads the kept one."""
    lamp = shop["lamp"]
    variant = lamp.variants.get()
    client.get(f"/api/v1/products/{lamp.slug}")
    allocate({variant.pk: 2})  # 20 -> 18 available: still in stock
    assert StorefrontAnswer.objects.get(product=lamp).detail is not None
    allocate({variant.pk: 13})  # 18 -> 5: low (threshold 5)
    assert StorefrontAnswer.objects.get(product=lamp).detail is None
    assert client.get(f"/api/v1/products/{lamp.slug}?n=1").json()["variants"][0][
        "availability"] == "low"


def test_a_build_never_keeps_what_a_write_made_stale_meanwhile(shop, monkeypatch):
    """A read builds from what it reads; a write that lands while it builds moves the
    generation, and the read's answer is not kept (the next read builds again)."""
    lamp = shop["lamp"]
    real = documents._documents

    def write_while_building(ids):
        built = real(ids)
        Product.objects.filter(pk=lamp.pk).update(name="Renamed meanwhile")
        documents.forget([lamp.pk])  # what the write's service does
        return built

    monkeypatch.setattr(documents, "_documents", write_while_building)
    answer = documents.build([lamp.pk])[lamp.pk][0]
    assert '"name": "Lampe' in answer  # what it read
    assert StorefrontAnswer.objects.get(product=lamp).summary is None  # not kept
    monkeypatch.setattr(documents, "_documents", real)
    assert '"name": "Renamed meanwhile"' in documents.build([lamp.pk])[lamp.pk][0]
    assert StorefrontAnswer.objects.get(product=lamp).summary is not None


def test_rebuild_all_keeps_every_product(shop):
    assert documents.rebuild_all() == Product.objects.count()
    assert not StorefrontAnswer.objects.filter(summary__isnull=True).exists()


def test_a_category_renamed_by_a_taxonomy_import_makes_its_products_answers_stale(client):
    import io

    from backoffice.imports.services import import_catalog

    def taxonomy(name):
        data = f"# Google_Product_Taxonomy_Version: 2099-01-01\n1 - Garden\n2 - Garden > {name}\n"
        import_catalog(stream=io.BytesIO(data.encode()), filename="taxonomy.txt",
                       file_format="google-taxonomy")

    taxonomy("Tools")
    make("Rake", Category.objects.get(google_category_id=2), ["9.00"])
    assert client.get("/api/v1/products/rake").json()["category"]["name"] == "Tools"
    taxonomy("Hand Tools")
    assert client.get("/api/v1/products/rake?n=1").json()["category"]["name"] == "Hand Tools"
    Views(client).check()
