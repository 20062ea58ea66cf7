from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    # LogoutView accepts only POST since Django 5, which keeps logout CSRF-protected.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
