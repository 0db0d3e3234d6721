"""Stores, customers and staff users."""
from __future__ import annotations

from ... import people
from ...errors import NotFound
from ...models import Customer, Store, User
from .. import tokens
from ..access import check_store
from ..operations import EVERYONE, STAFF, operation
from ..pagination import decode_cursor, page_body
from ..schemas import (CustomerCreate, CustomerOut, CustomerPage, CustomerQuery, StoreCreate, StoreOut, StorePage,
                       StoreQuery, StoreUpdate, UserCreate, UserOut, UserPage, UserQuery, UserUpdate)
from .common import dump, get_or_404

__all__ = ["Stores", "StoreItem", "Customers", "CustomerItem", "Users", "UserItem"]


class Stores:
    @operation("stores.list", roles=EVERYONE, query=StoreQuery, response=StorePage, tags=("stores",),
               summary="List stores", description="Customers see active stores only.")
    def on_get(self, req, resp):
        q, caller = req.context.query, req.context.caller
        active = True if caller.role == "customer" else q.active
        page = people.list_stores(req.context.session, active=active, after=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([dump(StoreOut, s) for s in page.items], page.next_after)

    @operation("stores.create", roles=("admin",), body=StoreCreate, response=StoreOut, status=201,
               tags=("stores",), summary="Create a store")
    def on_post(self, req, resp):
        store = people.create_store(req.context.session, req.context.body.model_dump(exclude_unset=True),
                                    req.context.caller)
        resp.status = 201
        resp.location = f"/api/v1/stores/{store.id}"
        resp.media = dump(StoreOut, store)


class StoreItem:
    @operation("stores.get", roles=EVERYONE, response=StoreOut, tags=("stores",), summary="Get a store",
               errors=(404,))
    def on_get(self, req, resp, store_id):
        store = get_or_404(req.context.session, Store, store_id, "store")
        if req.context.caller.role == "customer" and not store.active:
            raise NotFound(f"store {store_id} does not exist")
        resp.media = dump(StoreOut, store)

    @operation("stores.update", roles=("admin", "store_manager"), body=StoreUpdate, response=StoreOut,
               tags=("stores",), summary="Update a store",
               description="A store manager may update their own store only, and may not close or reopen it "
                           "(`active`: an admin's).", errors=(404,))
    def on_patch(self, req, resp, store_id):
        check_store(req.context.caller, store_id)
        store = people.update_store(req.context.session, store_id, req.context.body.model_dump(exclude_unset=True),
                                    req.context.caller)
        resp.media = dump(StoreOut, store)


class Customers:
    @operation("customers.list", roles=STAFF, query=CustomerQuery, response=CustomerPage, tags=("customers",),
               summary="List customers")
    def on_get(self, req, resp):
        q = req.context.query
        page = people.list_customers(req.context.session, q=q.q, store_id=q.store_id, after=decode_cursor(q.cursor),
                                     limit=q.limit)
        resp.media = page_body([dump(CustomerOut, c) for c in page.items], page.next_after)

    @operation("customers.create", roles=STAFF, body=CustomerCreate, response=CustomerOut, status=201,
               tags=("customers",), summary="Register a customer")
    def on_post(self, req, resp):
        customer = people.create_customer(req.context.session, req.context.body.model_dump(exclude_unset=True),
                                          req.context.caller)
        resp.status = 201
        resp.location = f"/api/v1/customers/{customer.id}"
        resp.media = dump(CustomerOut, customer)


class CustomerItem:
    @operation("customers.get", roles=EVERYONE, response=CustomerOut, tags=("customers",),
               summary="Get a customer", description="A customer may read their own record only.", errors=(404,))
    def on_get(self, req, resp, customer_id):
        caller = req.context.caller
        if caller.role == "customer" and caller.customer_id != customer_id:
            raise NotFound(f"customer {customer_id} does not exist")
        resp.media = dump(CustomerOut, get_or_404(req.context.session, Customer, customer_id, "customer"))


class Users:
    @operation("users.list", roles=("admin",), query=UserQuery, response=UserPage, tags=("users",),
               summary="List staff users")
    def on_get(self, req, resp):
        q = req.context.query
        page = people.list_users(req.context.session, role=q.role, store_id=q.store_id, active=q.active,
                                 after=decode_cursor(q.cursor), limit=q.limit)
        resp.media = page_body([dump(UserOut, u) for u in page.items], page.next_after)

    @operation("users.create", roles=("admin",), body=UserCreate, response=UserOut, status=201, tags=("users",),
               summary="Create a staff user")
    def on_post(self, req, resp):
        user = people.create_user(req.context.session, req.context.body.model_dump(exclude_unset=True),
                                  req.context.caller)
        resp.status = 201
        resp.location = f"/api/v1/users/{user.id}"
        resp.media = dump(UserOut, user)


class UserItem:
    @operation("users.get", roles=("admin",), response=UserOut, tags=("users",), summary="Get a staff user",
               errors=(404,))
    def on_get(self, req, resp, user_id):
        resp.media = dump(UserOut, get_or_404(req.context.session, User, user_id, "user"))

    @operation("users.update", roles=("admin",), body=UserUpdate, response=UserOut, tags=("users",),
               summary="Update a staff user",
               description="A new password or deactivation revokes the user's tokens.", errors=(404,))
    def on_patch(self, req, resp, user_id):
        data = req.context.body.model_dump(exclude_unset=True)
        session = req.context.session
        user = people.update_user(session, user_id, data, req.context.caller)
        if "password" in data or data.get("active") is False:
            tokens.revoke_user_tokens(session, user.id)
        resp.media = dump(UserOut, user)
