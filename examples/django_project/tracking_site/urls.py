"""URLs: PUT /orders/<order>/invoices/<invoice>/tracking forwards a tracking update to VTEX."""

from django.urls import path
from shipments import views

urlpatterns = [
    path(
        "orders/<str:order_id>/invoices/<str:invoice_number>/tracking",
        views.update_tracking,
        name="update-tracking",
    ),
]
