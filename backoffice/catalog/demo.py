"""A realistic demo catalog, and big synthetic ones for benchmarks.

Deterministic: the same seed gives the same catalog. Categories are written in three bulk inserts
(one per level) with mptt's updates disabled and the tree built once; products, variants and
images in bulk; stock through ``bulk_set_stock_levels`` so the ledger explains every unit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils.text import slugify

from backoffice.catalog.models import (
    CATEGORY_PATH_SEPARATOR,
    Category,
    Product,
    ProductImage,
    Variant,
)
from backoffice.catalog.services import refresh_listings
from backoffice.inventory.models import MovementReason, Warehouse
from backoffice.inventory.services import Actor, StockLevel, bulk_set_stock_levels
from backoffice.money import quantize

DEMO_SKU_PREFIX = "DEMO"
DEMO_PRODUCTS = 300
DEMO_SEED = 2026
SECOND_WAREHOUSE = {"code": "nairobi", "name": "Nairobi"}

# Top level > second level > leaves. Each leaf names the kind of goods sold there.
CATEGORY_TREE: dict[str, dict[str, dict[str, str]]] = {
    "Clothing": {
        "Men": {"Shirts": "apparel", "Trousers": "apparel", "Jackets": "apparel"},
        "Women": {"Dresses": "apparel", "Tops": "apparel", "Skirts": "apparel"},
        "Shoes": {"Sneakers": "shoes", "Sandals": "shoes"},
    },
    "Electronics": {
        "Phones": {"Smartphones": "phones", "Feature phones": "phones"},
        "Computers": {"Laptops": "computers", "Tablets": "computers"},
        "Audio": {"Headphones": "audio", "Speakers": "audio"},
    },
    "Home": {
        "Kitchen": {"Cookware": "kitchen", "Utensils": "kitchen"},
        "Furniture": {"Chairs": "furniture", "Tables": "furniture"},
        "Decor": {"Lamps": "decor", "Rugs": "decor"},
    },
}

# What each leaf sells, so a product's name fits its category.
LEAF_NOUNS: dict[str, list[str]] = {
    "Shirts": ["Shirt", "Polo", "Oxford Shirt"], "Trousers": ["Chinos", "Trousers", "Joggers"],
    "Jackets": ["Jacket", "Bomber", "Rain Jacket"], "Dresses": ["Dress", "Maxi Dress"],
    "Tops": ["Top", "Tee", "Blouse"], "Skirts": ["Skirt", "Midi Skirt"],
    "Sneakers": ["Sneaker", "Runner", "Trail Shoe"], "Sandals": ["Sandal", "Slide"],
    "Smartphones": ["Smartphone", "Phone Pro", "Phone Lite"], "Feature phones": ["Feature Phone"],
    "Laptops": ["Laptop", "Notebook", "Ultrabook"], "Tablets": ["Tablet", "Tab"],
    "Headphones": ["Headphones", "Earbuds"], "Speakers": ["Speaker", "Soundbar"],
    "Cookware": ["Pan", "Pot", "Jiko", "Kettle"], "Utensils": ["Knife Set", "Spatula", "Ladle"],
    "Chairs": ["Chair", "Stool"], "Tables": ["Table", "Desk", "Bench"],
    "Lamps": ["Lamp", "Floor Lamp"], "Rugs": ["Rug", "Runner Rug"],
}

KINDS: dict[str, dict] = {
    "apparel": {
        "brands": ["Kitenge Co", "Savanna Wear", "Urban Threads", "Maasai Mode"],
        "price": (8, 90),
        "options": {"Size": ["XS", "S", "M", "L", "XL"], "Colour": ["Black", "White", "Red",
                                                                     "Blue", "Olive"]},
        "materials": ["cotton", "linen", "polyester", "wool blend"],
    },
    "shoes": {
        "brands": ["Stride", "Jua Kali Footwear", "Safari Steps"],
        "price": (15, 140),
        "options": {"Size": ["38", "39", "40", "41", "42", "43", "44"],
                    "Colour": ["Black", "White", "Tan"]},
        "materials": ["leather", "canvas", "recycled rubber"],
    },
    "phones": {
        "brands": ["Tecno", "Infinix", "Nokia", "Samsung"],
        "price": (40, 900),
        "options": {"Storage": ["64 GB", "128 GB", "256 GB"], "Colour": ["Black", "Silver",
                                                                          "Blue"]},
        "materials": ["aluminium", "glass", "plastic"],
    },
    "computers": {
        "brands": ["Lenovo", "HP", "Dell", "Asus"],
        "price": (150, 1800),
        "options": {"Memory": ["8 GB", "16 GB", "32 GB"], "Storage": ["256 GB", "512 GB"]},
        "materials": ["aluminium", "plastic"],
    },
    "audio": {
        "brands": ["Sauti", "JBL", "Sony"],
        "price": (10, 400),
        "options": {"Colour": ["Black", "White", "Blue"]},
        "materials": ["plastic", "fabric", "aluminium"],
    },
    "kitchen": {
        "brands": ["Ramtons", "Tefal", "Home Chef"],
        "price": (5, 120),
        "options": {"Size": ["Small", "Medium", "Large"]},
        "materials": ["stainless steel", "cast iron", "wood", "aluminium"],
    },
    "furniture": {
        "brands": ["Mvule Works", "Nordic Home", "Cypress"],
        "price": (30, 600),
        "options": {"Finish": ["Oak", "Walnut", "White"]},
        "materials": ["hardwood", "steel", "rattan"],
    },
    "decor": {
        "brands": ["Kikapu", "Lumen", "Ufundi"],
        "price": (6, 250),
        "options": {"Colour": ["Natural", "Terracotta", "Indigo"]},
        "materials": ["sisal", "ceramic", "brass", "cotton"],
    },
}
ADJECTIVES = [
    "Classic", "Everyday", "Premium", "Essential", "Heritage", "Modern", "Compact", "Bold",
    "Coastal", "Highland", "Urban", "Studio", "Travel", "Signature",
]


@dataclass(frozen=True)
class GeneratedCatalog:
    categories: int
    products: int
    variants: int
    stock_rows: int

    def __str__(self) -> str:
        return (
            f"{self.products} products, {self.variants} variants, {self.stock_rows} stock rows, "
            f"{self.categories} new categories"
        )


def ensure_category_tree() -> tuple[int, dict[str, tuple[Category, str]]]:
    """Create the missing nodes of ``CATEGORY_TREE``; returns (created, {leaf path: (leaf, kind)}).

    New nodes are inserted level by level in bulk with mptt's bookkeeping off, their ``path`` set
    here (``save()`` is bypassed), then the tree is rebuilt once.
    """
    existing = {c.path: c for c in Category.objects.all()}
    created = 0
    levels: list[list[tuple[str, str, str | None]]] = [[], [], []]  # (name, path, parent path)
    for top, middles in CATEGORY_TREE.items():
        top_path = slugify(top)
        levels[0].append((top, top_path, None))
        for middle, leaves in middles.items():
            middle_path = f"{top_path}{CATEGORY_PATH_SEPARATOR}{slugify(middle)}"
            levels[1].append((middle, middle_path, top_path))
            for leaf in leaves:
                leaf_path = f"{middle_path}{CATEGORY_PATH_SEPARATOR}{slugify(leaf)}"
                levels[2].append((leaf, leaf_path, middle_path))
    with transaction.atomic():
        with Category.objects.disable_mptt_updates():
            for level, nodes in enumerate(levels):
                new = [
                    Category(
                        name=name,
                        slug=path.rsplit(CATEGORY_PATH_SEPARATOR, 1)[-1],
                        path=path,
                        parent=existing[parent] if parent else None,
                        position=position,
                        lft=0, rght=0, tree_id=0, level=level,
                    )
                    for position, (name, path, parent) in enumerate(nodes)
                    if path not in existing
                ]
                Category.objects.bulk_create(new)
                created += len(new)
                if new:
                    existing.update(
                        {c.path: c for c in Category.objects.filter(path__in=[n.path for n in new])}
                    )
        if created:
            Category.objects.rebuild()
            existing = {c.path: c for c in Category.objects.all()}
    kinds = {
        path: kind
        for top, middles in CATEGORY_TREE.items()
        for middle, leaves in middles.items()
        for leaf, kind in leaves.items()
        for path in [CATEGORY_PATH_SEPARATOR.join(slugify(p) for p in (top, middle, leaf))]
    }
    return created, {path: (existing[path], kind) for path, kind in kinds.items()}


def _second_warehouse() -> Warehouse:
    warehouse, _ = Warehouse.objects.get_or_create(
        code=SECOND_WAREHOUSE["code"], defaults={"name": SECOND_WAREHOUSE["name"]}
    )
    return warehouse


def _default_warehouse() -> Warehouse:
    warehouse = Warehouse.objects.filter(is_default=True).first()
    if warehouse is None:
        warehouse = Warehouse.objects.create(code="main", name="Main warehouse", is_default=True)
    return warehouse


def _money(rng: random.Random, low: int, high: int) -> Decimal:
    # Prices that look like prices: whole units ending in 9 or .99 / .50 cents.
    units = rng.randint(low, high)
    cents = rng.choice(["0.99", "0.50", "0.00", "0.00"])
    return quantize(Decimal(units) + Decimal(cents))


def _variant_options(rng: random.Random, options: dict[str, list[str]]) -> list[dict[str, str]]:
    """1-6 distinct combinations of the kind's options."""
    combos = [{}]
    for option, values in options.items():
        picked = rng.sample(values, k=rng.randint(1, min(3, len(values))))
        combos = [{**combo, option: value} for combo in combos for value in picked]
    rng.shuffle(combos)
    return combos[: rng.randint(1, 6)]


def _stock_quantity(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.08:
        return 0  # out of stock
    if roll < 0.2:
        return rng.randint(1, 5)  # low
    return rng.randint(6, 150)


def generate_catalog(
    products: int,
    seed: int,
    *,
    sku_prefix: str | None = None,
    batch_size: int = 1000,
) -> GeneratedCatalog:
    """Add ``products`` products (1-6 variants each, stock in two warehouses) to the catalog.

    Works for a few hundred demo products and for 100k-product benchmark catalogs alike: it
    writes in batches of ``batch_size`` products. SKUs and slugs carry ``sku_prefix`` (by default
    ``G<seed>``), so two catalogs with different prefixes live side by side; a prefix already in
    use is refused.
    """
    prefix = (sku_prefix or f"G{seed}").upper()
    if Variant.objects.filter(sku__startswith=f"{prefix}-").exists():
        raise ValueError(f"A catalog with the SKU prefix {prefix!r} already exists.")
    rng = random.Random(seed)  # noqa: S311 - demo data must be reproducible, not secret
    created_categories, leaves = ensure_category_tree()
    leaf_list = sorted(leaves.values(), key=lambda item: item[0].path)
    warehouses = [_default_warehouse(), _second_warehouse()]
    actor = Actor(label=f"catalog generator (seed {seed})")
    totals = {"products": 0, "variants": 0, "stock": 0}
    for start in range(0, products, batch_size):
        count = min(batch_size, products - start)
        with transaction.atomic():
            _write_batch(rng, prefix, start, count, leaf_list, warehouses, actor, totals)
    return GeneratedCatalog(
        categories=created_categories,
        products=totals["products"],
        variants=totals["variants"],
        stock_rows=totals["stock"],
    )


def _write_batch(rng, prefix, start, count, leaf_list, warehouses, actor, totals) -> None:
    product_rows: list[Product] = []
    plans: list[tuple[dict, list[dict[str, str]]]] = []
    for number in range(start + 1, start + count + 1):
        category, kind_name = rng.choice(leaf_list)
        kind = KINDS[kind_name]
        brand = rng.choice(kind["brands"])
        name = f"{brand} {rng.choice(ADJECTIVES)} {rng.choice(LEAF_NOUNS[category.name])}"
        product_rows.append(
            Product(
                name=name,
                slug=f"{slugify(name)}-{prefix.lower()}-{number}",
                description=f"The {name}: {rng.choice(kind['materials'])}, made to last.",
                brand=brand,
                product_type=kind_name,
                category=category,
                attributes={"material": rng.choice(kind["materials"])},
                tags=sorted(rng.sample(["new", "bestseller", "gift", "eco", "local"], k=2)),
                is_active=rng.random() > 0.05,
                is_featured=rng.random() < 0.08,
            )
        )
        plans.append((kind, _variant_options(rng, kind["options"])))
    Product.objects.bulk_create(product_rows)
    if product_rows[0].pk is None:  # backends that return no ids from bulk inserts
        slugs = [p.slug for p in product_rows]
        by_slug = dict(Product.objects.filter(slug__in=slugs).values_list("slug", "pk"))
        for product in product_rows:
            product.pk = by_slug[product.slug]

    variant_rows: list[Variant] = []
    quantities: list[list[int | None]] = []
    images: list[ProductImage] = []
    for product, (kind, combos) in zip(product_rows, plans, strict=True):
        number = product.slug.rsplit("-", 1)[-1]
        base = _money(rng, *kind["price"])
        images.append(
            ProductImage(
                product=product,
                source_url=f"https://picsum.photos/seed/{product.slug}/800/800",
                alt_text=product.name,
            )
        )
        on_sale = rng.random() < 0.2
        for position, combo in enumerate(combos, start=1):
            # Bigger options cost a little more, like a 256 GB phone over a 64 GB one.
            price = quantize(base * (1 + Decimal(position - 1) / 20))
            variant_rows.append(
                Variant(
                    product=product,
                    sku=f"{prefix}-{number}-{position}",
                    name=" / ".join(combo.values()),
                    option_values=combo,
                    price=price,
                    compare_at_price=quantize(price * Decimal("1.25")) if on_sale else None,
                    cost_price=quantize(price * Decimal("0.55")),
                    barcode=f"{rng.randrange(10**12, 10**13)}",
                    weight_grams=rng.randint(100, 3000),
                    is_active=True,
                    position=position,
                )
            )
            # Everything is stocked in the default warehouse, about a third in the second one.
            second = _stock_quantity(rng) if rng.random() < 0.35 else None
            quantities.append([_stock_quantity(rng), second])
    Variant.objects.bulk_create(variant_rows)
    if variant_rows[0].pk is None:
        by_sku = dict(
            Variant.objects.filter(sku__in=[v.sku for v in variant_rows]).values_list("sku", "pk")
        )
        for variant in variant_rows:
            variant.pk = by_sku[variant.sku]
    ProductImage.objects.bulk_create(images)

    levels = [
        StockLevel(variant_id=variant.pk, warehouse_id=warehouse.pk, quantity=quantity)
        for variant, per_warehouse in zip(variant_rows, quantities, strict=True)
        for warehouse, quantity in zip(warehouses, per_warehouse, strict=True)
        if quantity is not None
    ]
    bulk_set_stock_levels(levels, reason=MovementReason.IMPORT, actor=actor, reference="demo",
                          refresh_listings=False)
    # bulk_create sends no signals: the products' listing columns, in one pass.
    refresh_listings([product.pk for product in product_rows])
    totals["products"] += len(product_rows)
    totals["variants"] += len(variant_rows)
    totals["stock"] += len(levels)


def load_demo_catalog() -> str:
    """The ``make demo`` loader: the demo catalog once; later runs leave it as it is."""
    if Variant.objects.filter(sku__startswith=f"{DEMO_SKU_PREFIX}-").exists():
        return "Demo catalog: already loaded, left as it is."
    generated = generate_catalog(DEMO_PRODUCTS, DEMO_SEED, sku_prefix=DEMO_SKU_PREFIX)
    return f"Demo catalog: {generated}."
