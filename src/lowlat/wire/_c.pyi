from typing import Any

__all__ = ["enter_order", "send_order", "wait_for"]

def enter_order(session: Any, token: str, side: str, shares: int, stock: str, price: int, *,
                time_in_force: int = 99999, firm: str = "", display: str = "Y", capacity: str = "A",
                intermarket_sweep: str = "N", minimum_quantity: int = 0, cross_type: str = "N",
                customer_type: str = " ") -> None: ...
def send_order(session: Any, kind: str, token: str, payload: bytes) -> None: ...
def wait_for(session: Any, token: str, types: str = "AJUC", timeout: float = 5.0) -> dict: ...
