"""Type stubs for ``lowlat.itch``: the live backend's names plus the shared ones."""

from lowlat.itch import spec as spec
from lowlat.itch._c import Message as Message
from lowlat.itch._c import StreamDecoder as StreamDecoder
from lowlat.itch._c import decode as decode
from lowlat.itch._c import decode_chunk as decode_chunk
from lowlat.itch._c import decode_mold as decode_mold
from lowlat.itch._c import read as read
from lowlat.itch.framing import Batch as Batch
from lowlat.itch.framing import MoldHeader as MoldHeader
from lowlat.itch.framing import encode_mold as encode_mold
from lowlat.itch.framing import frame as frame
from lowlat.itch.framing import mold_header as mold_header
from lowlat.itch.generator import generate as generate
from lowlat.itch.generator import generate_messages as generate_messages
from lowlat.itch.spec import dtype_of as dtype_of
from lowlat.itch.spec import price_to_float as price_to_float

BACKEND: str
