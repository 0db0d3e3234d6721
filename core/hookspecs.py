"""Every hook pharmo2o calls: the contract between the core and its plugins.

Markers first, then one bodiless function per hook, grouped by what it is
about. Each docstring says when the hook runs, inside which transaction, and
how the answers of several plugins are combined. Plugins implement hooks with
``from core import hookimpl``.

Conventions used below:

* ``session`` is the SQLAlchemy session of the transaction the hook runs in;
  ``core.context.context_of(session)`` gives the Context (configuration,
  plugin registry) that made it.
  Raising any exception from a hook that runs inside a transaction rolls the
  whole transaction back; raising :class:`core.errors.DomainError` (or a
  subclass) turns into a clear 4xx error for the caller.
* ``caller`` is a :class:`core.auth.Caller` (``role`` is ``None`` for an
  anonymous customer-facing read, ``"customer"`` for a customer, or a staff
  role), ``channel`` is the sales channel name (``"store"``, ``"pos"``,
  ``"wechat"``, ...).
* Hooks that reach the outside world never run inside a transaction: they are
  fed from the outbox after commit (see ``notification_senders``).
"""
from __future__ import annotations

import pluggy

PROJECT = "pharmo2o"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------- products

@hookspec
def product_serialize(product, data, channel, caller):
    """Adjust the JSON ``data`` of ``product`` shown on ``channel`` to ``caller``.

    Runs every time a product is serialized (inside the read's transaction).
    Every implementation is called, in plugin order, each editing ``data`` in
    place (adding fields, withholding the package insert, adding notices); the
    return value is ignored.
    """


@hookspec
def product_visible(product, channel, caller):
    """Say whether ``product`` may be listed on ``channel`` for ``caller``.

    Runs when products are listed or fetched. Return ``False`` to hide it,
    ``True`` or ``None`` for no objection. The product is hidden if any
    implementation returns ``False`` (a veto: hiding wins).
    """


@hookspec
def product_sale_refusal(product, channel, caller):
    """Return a reason (a short string) why ``product`` may not be sold on ``channel``.

    Runs while an order is validated, inside the order's transaction, and when
    a product's ``purchasable`` flag is serialized. Return ``None`` when there
    is no objection. Every implementation is called; any reason refuses the
    sale and all reasons are reported together.
    """


# ------------------------------------------------------------------------ stock

@hookspec
def stock_movement_recorded(session, movement):
    """Observe one appended stock movement (receipt, sale, adjustment,
    reservation, release, transfer_out, transfer_in, return).

    Runs inside the transaction that appends the movement, right after it is
    flushed: raising vetoes the whole change. Every implementation is called;
    return values are ignored. Work that talks to the outside world must go
    through :func:`core.outbox.enqueue`, never be done here.
    """


# ----------------------------------------------------------------------- orders

@hookspec
def order_request_fields():
    """Declare extra fields a plugin accepts in the order-create request.

    Called when the API schema is built (once per app). Return a dict
    ``{field_name: (type, default)}`` in pydantic's ``create_model`` form; the
    dicts of all plugins are merged (a name declared twice is an error naming
    both plugins). The values arrive in ``order_validate``/``order_price_adjustments``
    as ``extra``.
    """


@hookspec
def order_validate(session, order, extra, caller):
    """Validate a new ``order`` (lines allocated, not yet committed).

    Runs inside the order's transaction before it is committed. Return a list
    of ``(field, message)`` problems, or ``None``. Every implementation is
    called; any problem vetoes the order, the transaction is rolled back and
    all problems are reported together as a 422.
    """


@hookspec
def order_hold(session, order, extra, caller):
    """Say whether a new ``order`` must wait for a review before payment.

    Runs inside the order's transaction after validation. Return a reason
    string to hold the order (its status becomes ``awaiting_review``), or
    ``None``. Every implementation is called; the order is held if any
    returns a reason, and all reasons are recorded on the order.
    """


@hookspec
def order_price_adjustments(session, order, extra, caller):
    """Return price adjustments for a new ``order``.

    Runs inside the order's transaction after validation and holds. Return a
    list of ``{"code": str, "label": str, "amount_fen": int}`` (negative for a
    discount), or ``None``. Every implementation is called and all
    adjustments are added to the order; the total may not go below zero
    (that vetoes the order).
    """


@hookspec
def order_before_transition(session, order, old_status, new_status, caller):
    """Veto an order's state change.

    Runs inside the transaction of the change, after the core has checked the
    state machine and before the change is written. Return a reason string to
    refuse the transition (a 409 for the caller), or ``None``. Every
    implementation is called; any reason refuses it.
    """


@hookspec
def order_status_changed(session, order, old_status, new_status, caller):
    """Observe an order's state change (``old_status`` is ``None`` on creation).

    Runs inside the transaction of the change, after it is written: raising
    rolls the change back. Every implementation is called; return values are
    ignored. Enqueue outside-world effects with :func:`core.outbox.enqueue`.
    """


# -------------------------------------------------------------------- framework

@hookspec
def register_routes():
    """Return API routes the plugin adds: a list of ``(uri_template, resource)``.

    Called once when the Falcon app is built; only enabled plugins are asked.
    The lists of all plugins are concatenated; a template registered twice is
    an error naming it. Every ``on_<method>`` responder must be decorated with
    :func:`core.api.operation` (the roles it admits, its schemas); the app
    refuses to start with an undeclared one.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``pharmo2o`` command line.

    Called once when the CLI starts, with the root ``click.Group``; the
    implementation calls ``cli.add_command(...)``. Return values are ignored.
    """


@hookspec
def register_sales_channels():
    """Return the sales channels a plugin provides: a list of dicts
    ``{"name": str, "online": bool, "label": str}``.

    Called when the registry of channels is built; all lists are concatenated
    (a duplicate name is an error). Online channels are customer-facing and
    get the online restrictions (ban list, Rx rules).
    """


@hookspec
def register_payment_providers():
    """Return payment providers: a list of objects with ``name`` (str),
    ``roles`` (the staff roles that may use it, empty for customers) and
    ``capture(session, order, payload, caller) -> dict`` (raises
    :class:`core.errors.DomainError` to refuse).

    Called when the provider registry is built; all lists are concatenated
    (a duplicate name is an error).
    """


@hookspec
def notification_senders(ctx):
    """Return ``{kind: callable(payload: dict) -> None}`` for outbox messages.

    Called by the outbox dispatcher, after commit and outside any transaction,
    with the dispatcher's :class:`core.context.Context` as ``ctx`` (its
    database and configuration, for senders that need them; an
    implementation may leave the parameter out).
    A sender raises to ask for a retry (with backoff); the message is marked
    sent when it returns. The dicts are merged; a kind claimed by two plugins
    is an error naming both.
    """


@hookspec
def register_permissions():
    """Return extra permissions: ``{permission_name: [role, ...]}``.

    Called once when the app is built. A permission name is an API operation
    id (``"orders.refund"``): the roles are admitted to that operation in
    addition to the ones it declares. Lists for the same permission are
    merged (union of roles); a grant can widen, never narrow.
    """


@hookspec
def register_console_pages():
    """Return the pages a plugin adds to the staff web console (``/console/``):
    a list of dicts ``{"id", "title", "roles", "script"}`` plus optional
    ``"section"`` (the navigation group, default ``"Plugins"``) and ``"order"``
    (an int; lower first, default 100).

    ``id`` is a slug (``[a-z0-9-]``) and the page's address is
    ``/console/<id>``; ``roles`` lists the staff roles whose navigation shows
    the page; ``script`` is an ES module path relative to the plugin package's
    ``console/`` folder, served at ``/console/plugins/<plugin>/<script>``
    (the core's own pages are in ``core/console/static/``). The module exports
    ``render(page)`` and calls the API through the console's ``lib.js`` with
    the same bearer token.

    Called when the app is built (a malformed page is an error naming the
    plugin) and for ``GET /api/v1/console/pages``; only enabled plugins are
    asked, so a disabled plugin's pages disappear with its routes. The lists
    of all plugins are concatenated (the core's own pages come from the core's
    default plugin); an ``id`` given twice is an error naming both plugins.
    Pages only decide the navigation: the API operations a page calls still
    enforce their own roles.
    """


@hookspec
def startup(registry):
    """Called once when an app or CLI run has loaded the enabled plugins.

    ``registry`` is the :class:`core.plugins.PluginRegistry`. Not inside a
    transaction. Return values are ignored.
    """


@hookspec
def capabilities():
    """Return the names of capabilities a plugin provides (e.g. ``"prescription_review"``).

    Called when the core decides a default that a plugin may lift: without a
    ``"prescription_review"`` capability the core refuses Rx lines on online
    channels. The lists of all plugins are united.
    """


@hookspec
def register_jobs():
    """Return periodic jobs: a list of :class:`core.jobs.Job` (``name``,
    ``interval`` in seconds, ``run(ctx)`` returning a short summary).

    Called when a job runner starts (``pharmo2o worker``, or the one
    ``pharmo2o serve`` starts beside gunicorn). Every job must be safe to run
    in several processes at once (they may run on several machines) and
    idempotent. Lists are concatenated; a job name given twice is an error
    naming both plugins. ``run`` is called outside any transaction.
    """
