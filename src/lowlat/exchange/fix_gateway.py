"""FIX in front of the simulator's OUCH book: orders in, ExecutionReports out.

A FIX user's NewOrderSingle / OrderCancelRequest / OrderCancelReplaceRequest become the OUCH
Enter / Cancel / Replace Order the book understands (ClOrdID is the OUCH order token, so at most 14
characters); the book's OUCH answers become FIX messages:

======================  =============================================================
OUCH answer             FIX
======================  =============================================================
Accepted                ExecutionReport ExecType NEW (0), OrdStatus NEW
Rejected                ExecutionReport ExecType REJECTED (8), Text = the OUCH reason
Executed                ExecutionReport TRADE (F) in 4.4, PARTIAL_FILL/FILL (1/2) in 4.2
Canceled                ExecutionReport CANCELED (4) (ClOrdID of the cancel request)
Replaced                ExecutionReport REPLACED (5)
(no answer to a cancel  OrderCancelReject (9), CxlRejReason 1 (unknown order)
or replace)
======================  =============================================================

An order message the gateway cannot translate (unsupported OrdType, a ClOrdID too long) is
answered with ExecutionReport REJECTED and a Text saying why. Each answer is a tuple
``(encoder method name, args, kwargs)`` for :meth:`lowlat.net.fix_session.FixSession.send`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Literal, Union

from .. import fix, ouch
from ..fix import ExecType, OrdStatus, Tag
from ..net.ouch import REJECT_REASONS, TIF_IOC, TIF_SYSTEM_HOURS

__all__ = ["FixGateway", "FixAnswer", "Answer"]

#: A FIX message to send: ``(encoder method name, args, kwargs)`` for ``FixSession.send``.
FixAnswer = tuple[str, tuple, dict[str, object]]
#: One answer for one user: a FIX message for a FIX user, an OUCH payload for an OUCH user.
Answer = Union[tuple[Literal["fix"], FixAnswer], tuple[Literal["ouch"], bytes]]

_SIDE_TO_OUCH = {fix.Side.BUY: "B", fix.Side.SELL: "S", fix.Side.SELL_SHORT: "T", fix.Side.SELL_SHORT_EXEMPT: "E"}
_SIDE_TO_FIX = {v: k for k, v in _SIDE_TO_OUCH.items()}


class _Order:
    __slots__ = ("cl_ord_id", "order_id", "symbol", "side", "quantity", "price", "cum_qty", "notional")

    def __init__(self, cl_ord_id, symbol, side, quantity, price):
        self.cl_ord_id = cl_ord_id
        self.order_id = "NONE"
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.price = price
        self.cum_qty = 0
        self.notional = 0


class FixGateway:
    """Translate between FIX users and an :class:`~lowlat.exchange.ouch_book.OuchExchange`.

    ``begin_string`` per user decides 4.2 or 4.4 fill reports. Called from the simulator's one
    thread; not thread-safe by itself.
    """

    def __init__(self, book) -> None:
        self.book = book
        self.begin_strings: dict[str, str] = {}  # FIX user -> BeginString
        self.orders: dict[tuple[str, str], _Order] = {}  # (user, OUCH token) -> order
        self._cancels: dict[tuple[str, str], str] = {}  # (user, token being canceled) -> cancel ClOrdID
        self._exec_ids = 0
        self._buffers = {name: bytearray(ouch.MESSAGES[name].length) for name in ("enter_order", "cancel_order",
                                                                                   "replace_order")}
        self._record = ouch.ExchangeMessage()

    def _exec_id(self) -> str:
        self._exec_ids += 1
        return f"EX{self._exec_ids}"

    @staticmethod
    def _price(value: bytes | None) -> int:
        if value is None:
            return 0
        try:
            return int((Decimal(value.decode("ascii")) * ouch.PRICE_SCALE).to_integral_value())
        except InvalidOperation:
            return 0

    # -- FIX in --------------------------------------------------------------------------------

    def on_fix(self, user: str, message) -> list[tuple[str, Answer]]:
        """Handle one application message from FIX ``user``; return ``(user, answer)`` pairs.

        An answer is ``("fix", (method, args, kwargs))`` for a FIX user or ``("ouch", payload)``
        for an OUCH one (a fill's counterparty)."""
        kind = message.msg_type
        fields = message.fields
        if kind == fix.MsgType.NewOrderSingle:
            return self._new_order(user, fields)
        if kind in (fix.MsgType.OrderCancelRequest, fix.MsgType.OrderCancelReplaceRequest):
            return self._cancel_or_replace(user, kind, fields)
        return []

    def _reject(self, user: str, cl_ord_id: str, symbol: str, side: str, text: str) -> list[tuple[str, Answer]]:
        report: FixAnswer = ("execution_report", ("NONE", self._exec_id(), ExecType.REJECTED, OrdStatus.REJECTED,
                                                  symbol or "?", side or fix.Side.BUY, 0, 0, 0),
                             {"cl_ord_id": cl_ord_id, "text": text})
        return [(user, ("fix", report))]

    def _new_order(self, user: str, fields: dict) -> list[tuple[str, Answer]]:
        cl_ord_id = fields[Tag.ClOrdID].decode("latin-1")
        symbol = fields[Tag.Symbol].decode("latin-1")
        side = fields[Tag.Side].decode("latin-1")
        if len(cl_ord_id) > 14 or len(symbol) > 8:
            return self._reject(user, cl_ord_id, symbol, side, "ClOrdID over 14 or Symbol over 8 characters")
        if side not in _SIDE_TO_OUCH:
            return self._reject(user, cl_ord_id, symbol, side, "unsupported Side")
        if fields[Tag.OrdType] != fix.OrdType.LIMIT.encode():
            return self._reject(user, cl_ord_id, symbol, side, "only limit orders (OrdType 2)")
        quantity = int(fields[Tag.OrderQty])
        price = self._price(fields.get(Tag.Price))
        tif = TIF_IOC if fields.get(Tag.TimeInForce) == fix.TimeInForce.IOC.encode() else TIF_SYSTEM_HOURS
        self.orders[(user, cl_ord_id)] = _Order(cl_ord_id, symbol, side, quantity, price)
        buffer = self._buffers["enter_order"]
        try:
            ouch.encode_enter_order(buffer, 0, cl_ord_id, _SIDE_TO_OUCH[side], quantity, symbol, price, tif)
        except (TypeError, ValueError) as error:
            return self._reject(user, cl_ord_id, symbol, side, str(error)[:100])
        return self.translate(self.book.on_message(user, bytes(buffer)))

    def _cancel_or_replace(self, user: str, kind: str, fields: dict) -> list[tuple[str, Answer]]:
        cl_ord_id = fields[Tag.ClOrdID].decode("latin-1")
        orig = fields[Tag.OrigClOrdID].decode("latin-1")
        order = self.orders.get((user, orig))
        answers: list[tuple[str, Answer]] = []
        if kind == fix.MsgType.OrderCancelRequest:
            buffer = self._buffers["cancel_order"]
            if order is not None and len(orig) <= 14:
                ouch.encode_cancel_order(buffer, 0, orig, 0)
                self._cancels[(user, orig)] = cl_ord_id
                answers = self.translate(self.book.on_message(user, bytes(buffer)))
            response_to = fix.CxlRejResponseTo.ORDER_CANCEL_REQUEST
        else:
            buffer = self._buffers["replace_order"]
            if order is not None and len(cl_ord_id) <= 14:
                quantity = int(fields[Tag.OrderQty])
                price = self._price(fields.get(Tag.Price)) or order.price
                ouch.encode_replace_order(buffer, 0, orig, cl_ord_id, quantity, price, TIF_SYSTEM_HOURS)
                replacement = _Order(cl_ord_id, order.symbol, order.side, quantity, price)
                replacement.order_id = order.order_id
                self.orders[(user, cl_ord_id)] = replacement
                answers = self.translate(self.book.on_message(user, bytes(buffer)))
            response_to = fix.CxlRejResponseTo.ORDER_CANCEL_REPLACE_REQUEST
        self._cancels.pop((user, orig), None)
        if not any(u == user and kind_ == "fix" for u, (kind_, _) in answers):
            status = OrdStatus.CANCELED if order is None else OrdStatus.NEW
            answers.append((user, ("fix", ("order_cancel_reject", (order.order_id if order else "NONE", cl_ord_id, orig,
                                                                   status, response_to),
                                           {"cxl_rej_reason": 1, "text": "unknown or dead order"}))))
        return answers

    # -- OUCH out ------------------------------------------------------------------------------

    def translate(self, answers: list[tuple[str, bytes]]) -> list[tuple[str, Answer]]:
        """Turn the book's OUCH answers into FIX for FIX users; keep OUCH for the others."""
        out: list[tuple[str, Answer]] = []
        for user, payload in answers:
            if user not in self.begin_strings:
                out.append((user, ("ouch", payload)))
                continue
            message = self._to_fix(user, payload)
            if message is not None:
                out.append((user, ("fix", message)))
        return out

    def _to_fix(self, user: str, payload: bytes) -> FixAnswer | None:
        record = self._record
        record.decode(payload)
        kind = record.type
        token = record.replacement_order_token if kind == "U" else record.order_token
        if token is None:  # a message about no order (System Event): nothing for a FIX user
            return None
        order = self.orders.get((user, token))
        if order is None:
            return None
        side = order.side
        if kind == "A":
            order.order_id = str(record.order_reference_number)
            return ("execution_report", (order.order_id, self._exec_id(), ExecType.NEW, OrdStatus.NEW, order.symbol,
                                         side, order.quantity, 0, 0),
                    {"cl_ord_id": order.cl_ord_id, "order_qty": order.quantity, "price": order.price})
        if kind == "J":
            del self.orders[(user, token)]
            return ("execution_report", ("NONE", self._exec_id(), ExecType.REJECTED, OrdStatus.REJECTED, order.symbol,
                                         side, 0, 0, 0),
                    {"cl_ord_id": order.cl_ord_id,
                     "text": f"{record.reason}: {REJECT_REASONS.get(record.reason or '', '?')}"})
        if kind == "E":
            shares, price = record.executed_shares, record.execution_price
            if shares is None or price is None:  # every Executed carries both
                return None
            order.cum_qty += shares
            order.notional += shares * price
            leaves = max(order.quantity - order.cum_qty, 0)
            if self.begin_strings[user] == fix.FIX44:
                exec_type = ExecType.TRADE
            else:
                exec_type = ExecType.FILL if leaves == 0 else ExecType.PARTIAL_FILL
            status = OrdStatus.FILLED if leaves == 0 else OrdStatus.PARTIALLY_FILLED
            return ("execution_report", (order.order_id, self._exec_id(), exec_type, status, order.symbol, side, leaves,
                                         order.cum_qty, order.notional // order.cum_qty),
                    {"cl_ord_id": order.cl_ord_id, "last_qty": shares, "last_px": price})
        if kind == "C":
            cancel_id = self._cancels.pop((user, token), None)
            return ("execution_report", (order.order_id, self._exec_id(), ExecType.CANCELED, OrdStatus.CANCELED,
                                         order.symbol, side, 0, order.cum_qty,
                                         order.notional // order.cum_qty if order.cum_qty else 0),
                    {"cl_ord_id": cancel_id or order.cl_ord_id, "orig_cl_ord_id": order.cl_ord_id if cancel_id else None,
                     "text": f"{record.reason}"})
        if kind == "U":
            previous = record.previous_order_token
            return ("execution_report", (order.order_id, self._exec_id(), ExecType.REPLACED, OrdStatus.REPLACED,
                                         order.symbol, side, order.quantity, 0, 0),
                    {"cl_ord_id": order.cl_ord_id, "orig_cl_ord_id": previous, "order_qty": order.quantity,
                     "price": order.price})
        return None
