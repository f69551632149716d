"""`NodeReader`s over the `log_nodes` table: one SELECT per proof, block-wise scans for audits."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.db.models import LogNode
from licensing.tlog.merkle import NodeId

_level = LogNode.__table__.c.level  # type: ignore[attr-defined]
_index = LogNode.__table__.c["index"]  # type: ignore[attr-defined]
_hash = LogNode.__table__.c.hash  # type: ignore[attr-defined]

#: Node ids per SELECT; stays under SQLite's bound-parameter limit (2 per id).
_MAX_IDS_PER_QUERY = 400


def _decode(level: int, index: int, value: object) -> bytes:
    # A hand-edited row that is not a 64-digit hex string (SQLite even stores a blob or a
    # number in a text column) reads as "not stored", which every check reports as tampering.
    if not isinstance(value, str) or len(value) != 64:
        raise KeyError((level, index))
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyError((level, index)) from None


def _node_query(db: Session | Connection, ids: list[NodeId]) -> tuple[str, tuple[int, ...]]:
    """``(level = L AND index IN (...)) OR ...`` as driver SQL.

    Grouped by level so both databases use the primary key (SQLite scans the whole table for a
    row-value ``(level, index) IN (...)``); plain driver SQL because building the equivalent
    SQLAlchemy expression costs more than the query itself on a hot proof path.
    """
    dialect = db.get_bind().dialect if isinstance(db, Session) else db.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    by_level: dict[int, list[int]] = {}
    for level, index in ids:
        by_level.setdefault(level, []).append(index)
    clauses: list[str] = []
    params: list[int] = []
    for level, indices in sorted(by_level.items()):
        clauses.append(f'(level = {mark} AND "index" IN ({", ".join([mark] * len(indices))}))')
        params.append(level)
        params.extend(indices)
    # Only placeholders are interpolated; every value is a bound parameter.
    sql = 'SELECT level, "index", hash FROM log_nodes WHERE ' + " OR ".join(clauses)  # noqa: S608
    return sql, tuple(params)


class SqlNodeReader:
    """A :class:`licensing.tlog.merkle.NodeReader` over `log_nodes`.

    Call :meth:`prefetch` with ``inclusion_proof_node_ids(...)`` (or the consistency ids) so
    the whole proof costs one SELECT; nodes not prefetched are read one query each.
    """

    def __init__(self, db: Session | Connection) -> None:
        self._db = db
        self._cache: dict[NodeId, bytes] = {}

    def prefetch(self, ids: Iterable[NodeId]) -> None:
        wanted = sorted({i for i in ids if i not in self._cache})
        for start in range(0, len(wanted), _MAX_IDS_PER_QUERY):
            chunk = wanted[start : start + _MAX_IDS_PER_QUERY]
            sql, params = _node_query(self._db, chunk)
            connection = self._db.connection() if isinstance(self._db, Session) else self._db
            rows = connection.exec_driver_sql(sql, params)
            for level, index, value in rows:
                try:
                    self._cache[(int(level), int(index))] = _decode(level, index, value)
                except KeyError:
                    continue

    def get(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            self.prefetch([key])
        return self._cache[key]


class BlockNodeReader:
    """A `NodeReader` for sequential scans: loads every node under a block of leaves at once.

    The self-check walks the tree left to right; reading nodes per block of ``block_leaves``
    leaves (one range query per level) keeps it O(n) rows with O(n / block) queries and bounded
    memory. Nodes above the block size are few (2n / block) and are loaded on demand.
    """

    def __init__(self, db: Session | Connection, *, block_leaves: int = 1 << 15) -> None:
        if block_leaves & (block_leaves - 1):
            raise ValueError("block_leaves must be a power of two")
        self._db = db
        self._block_bits = block_leaves.bit_length() - 1
        self._blocks: OrderedDict[int, dict[NodeId, bytes]] = OrderedDict()
        self._single = SqlNodeReader(db)

    def _load_block(self, block: int) -> dict[NodeId, bytes]:
        nodes: dict[NodeId, bytes] = {}
        first_leaf = block << self._block_bits
        clauses = [
            and_(
                _level == level,
                _index >= first_leaf >> level,
                _index < (first_leaf + (1 << self._block_bits)) >> level,
            )
            for level in range(self._block_bits + 1)
        ]
        for clause in clauses:
            for level, index, value in self._db.execute(
                select(_level, _index, _hash).where(clause)
            ):
                try:
                    nodes[(int(level), int(index))] = _decode(level, index, value)
                except KeyError:
                    continue
        return nodes

    def get(self, level: int, index: int) -> bytes:
        if level > self._block_bits:
            return self._single.get(level, index)
        block = (index << level) >> self._block_bits
        nodes = self._blocks.get(block)
        if nodes is None:
            nodes = self._load_block(block)
            self._blocks[block] = nodes
            # Two blocks: the current one and its left neighbour (audits look one leaf back).
            while len(self._blocks) > 2:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(block)
        return nodes[(level, index)]
