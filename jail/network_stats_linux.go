package jail

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
)

// NetStats are a tenant's network counters in nat mode, summed over her
// live environments (each environment's counters go with it).
type NetStats struct {
	BytesIn  uint64 // to her
	BytesOut uint64 // from her
	Dropped  uint64 // her packets dropped by policy (egress, the deny list, the host, limits.connections)
}

// TenantNetStats reads every tenant's NetStats from the nftables table of
// the gateway named name (NetworkOptions.Name; serve's is statedir's
// Hash): the counters on her elements of the acct_* sets, found by
// their comment, her name. No table (no nat, or no gateway running) is
// no counters.
func TenantNetStats(name string) (map[string]NetStats, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: namesFor(name).table}
	if _, err := conn.ListTableOfFamily(table.Name, table.Family); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return map[string]NetStats{}, nil
		}
		return nil, fmt.Errorf("nftables: table inet %s: %w", table.Name, err)
	}
	out := map[string]NetStats{}
	for _, set := range []string{setAcctIn, setAcctOut, setAcctDrop} {
		elems, err := conn.GetSetElements(&nftables.Set{Table: table, Name: set, KeyType: nftables.TypeIPAddr})
		if err != nil {
			return nil, fmt.Errorf("nftables: set %s: %w", set, err)
		}
		for _, e := range elems {
			if e.Counter == nil {
				continue
			}
			st := out[e.Comment]
			switch set {
			case setAcctIn:
				st.BytesIn += e.Counter.Bytes
			case setAcctOut:
				st.BytesOut += e.Counter.Bytes
			case setAcctDrop:
				st.Dropped += e.Counter.Packets
			}
			out[e.Comment] = st
		}
	}
	return out, nil
}
