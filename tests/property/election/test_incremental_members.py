"""An election fed member changes one event at a time against one fed the whole view.

``Election.update_some`` is what the agent calls per member event; it must leave
the election exactly where ``update_members`` with the full, rebuilt view would:
same effects, same roles, same leader, on random sequences of changes and time.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.election import Election, ElectionConfig, MemberView

NAMES = ["a", "b", "c", "d", "e"]

views = st.one_of(
    st.none(),
    st.builds(
        MemberView,
        rank=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
        alive=st.booleans(),
    ),
)
steps = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(NAMES), views, min_size=1, max_size=3),
        st.floats(min_value=0.0, max_value=4.0),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(steps, st.sampled_from([None, 0, 1, 2]))
def test_incremental_member_updates_match_full_views(changes, rank):
    config = ElectionConfig()
    incremental = Election(config, "a", rank=rank, now=0.0)
    rebuilt = Election(config, "a", rank=rank, now=0.0)
    known: dict[str, MemberView] = {}
    now = 0.0
    for change, elapsed in changes:
        now += elapsed
        for name, view in change.items():
            if view is None:
                known.pop(name, None)
            else:
                known[name] = view
        got = incremental.update_some(change, now)
        expected = rebuilt.update_members(dict(known), now)
        assert got == expected
        assert incremental.role is rebuilt.role
        assert incremental.leader(now) == rebuilt.leader(now)
        assert incremental.next_deadline() == rebuilt.next_deadline()
        assert incremental._ranked == rebuilt._ranked
