"""A plain Django REST Framework + django-filter product listing: the API benchmark's baseline.

Benchmark code only (``benchmarks/api_bench.py`` serves it with gunicorn): the way a seed-style
project ships a listing, ModelSerializers with nested variants and images, PageNumberPagination,
DjangoFilterBackend and OrderingFilter, and no select_related or prefetch_related.
"""
