package zeroth

import (
	"unsafe"

	"github.com/pkg/errors"
)

// RankOracle ranks candidate points the way a human rater would (ZO-RankSGD, Tang et al., "Zeroth-Order
// Optimization Meets Human Feedback: Provable Learning via Ranking Oracles", arXiv 2303.03751, §2): given
// m points it returns the indices of the k best, best first (k = m, or m−1, for a full ranking; k < m for
// the top-k oracle). "Better" means lower objective. The points are only valid during the call.
type RankOracle interface {
	Rank(points [][]float64) ([]int, error)
}

// LossOracle is a RankOracle that ranks by a known loss, for tests and simulations: the top K (0 = all)
// points by increasing F.
type LossOracle struct {
	F      func(x []float64) float64
	K      int
	losses []float64
	idx    []int
}

// Rank returns the indices of the K points with the lowest F, lowest first.
func (o *LossOracle) Rank(points [][]float64) ([]int, error) {
	m := len(points)
	o.losses = o.losses[:0]
	o.idx = o.idx[:0]
	for i, p := range points {
		o.losses = append(o.losses, o.F(p))
		o.idx = append(o.idx, i)
	}
	// insertion sort: m is small (a human ranks a handful of points)
	for i := 1; i < m; i++ {
		for j := i; j > 0 && o.losses[o.idx[j]] < o.losses[o.idx[j-1]]; j-- {
			o.idx[j], o.idx[j-1] = o.idx[j-1], o.idx[j]
		}
	}
	k := o.K
	if k <= 0 || k > m {
		k = m
	}
	return o.idx[:k], nil
}

// RankSGD is the ZO-RankSGD estimator (Tang et al., Algorithm 1 and eq. (6)): it samples ξ_1..ξ_m ~ N(0, I),
// asks the oracle to rank θ + μξ_i, forms the set E of revealed pairs (i → j: i ranked better than j) and
//
//	ĝ = (1/|E|) Σ_{(i→j)∈E} (ξ_j − ξ_i),   θ ← θ − ηĝ,
//
// with |E| = k(k−1)/2 + k(m−k) for a top-k of m oracle. Per point, −ĝ = (1/|E|) Σ_p w_p ξ_p with w_p =
// m−1−2r for the point of rank r (0 = best) and w_p = −k for an unranked point.
//
// The authors' code (TZW1998/Taming-Stable-Diffusion-with-Human-Ranking-Feedback, optimizer.py,
// RankSGD.rank_feedback) weights a ranked point by m−2r instead, i.e. +1 on each ranked point, adds the
// direction to a running average over rounds and alternates with a line-search round; with CodeWeights
// set, Direction uses the code's weights (−ĝ_code = −ĝ_paper + (1/|E|) Σ_{ranked} ξ_p). The paper's
// estimator is the default.
type RankSGD struct {
	M           int     // points per query, m ≥ 2
	Mu          float64 // smoothing radius μ of θ + μξ
	CodeWeights bool    // use the official code's weights m−2r for ranked points
	r           *rng
	xi, pts     [][]float64
	queries     int64
	w           []float64
	rank        []int
}

// NewRankSGD returns a ZO-RankSGD estimator over m points with smoothing radius mu.
func NewRankSGD(m int, mu float64, seed uint64) (*RankSGD, error) {
	if m < 2 {
		return nil, errors.Errorf("zeroth.RankSGD: m = %d, need at least 2 points", m)
	}
	if !finitePos(mu) {
		return nil, errors.Errorf("zeroth.RankSGD: mu %v must be finite and positive", mu)
	}
	return &RankSGD{M: m, Mu: mu, r: newRNG(seed)}, nil
}

// Queries returns the number of points shown to the oracle so far (each is one forward pass for a
// loss-based oracle).
func (rs *RankSGD) Queries() int64 { return rs.queries }

// StateBytes returns the bytes held: the m directions and m query points of len(x) values each (kept to
// hand the oracle its points), plus small buffers.
func (rs *RankSGD) StateBytes() int64 {
	b := int64(unsafe.Sizeof(*rs)) + int64(cap(rs.w))*8 + int64(cap(rs.rank))*8
	for i := range rs.xi {
		b += int64(cap(rs.xi[i])+cap(rs.pts[i]))*8 + 48
	}
	return b
}

// Direction fills g with the ZO-RankSGD estimate ĝ at x (descent: x ← x − ηĝ) from one oracle query.
func (rs *RankSGD) Direction(x []float64, oracle RankOracle, g []float64) error {
	d, m := len(x), rs.M
	if len(g) != d {
		return errors.Errorf("zeroth.RankSGD: len(g) = %d, len(x) = %d", len(g), d)
	}
	if len(rs.xi) != m || (m > 0 && len(rs.xi[0]) != d) {
		rs.xi, rs.pts = make([][]float64, m), make([][]float64, m)
		for i := range rs.xi {
			rs.xi[i], rs.pts[i] = make([]float64, d), make([]float64, d)
		}
		rs.w = make([]float64, m)
	}
	for i := 0; i < m; i++ {
		for j := 0; j < d; j++ {
			rs.xi[i][j] = rs.r.norm()
			rs.pts[i][j] = x[j] + rs.Mu*rs.xi[i][j]
		}
	}
	rs.queries += int64(m)
	order, err := oracle.Rank(rs.pts)
	if err != nil {
		return errors.Wrap(err, "zeroth.RankSGD: oracle")
	}
	k := len(order)
	if k < 1 || k > m {
		return errors.Errorf("zeroth.RankSGD: oracle returned %d indices for %d points", k, m)
	}
	w := rs.w
	for i := range w {
		w[i] = float64(-k) // unranked
	}
	for r, p := range order {
		if p < 0 || p >= m || w[p] != float64(-k) {
			return errors.Errorf("zeroth.RankSGD: oracle returned an invalid or repeated index %d", p)
		}
		w[p] = float64(m - 1 - 2*r)
		if rs.CodeWeights {
			w[p]++
		}
	}
	nE := float64(k*(k-1)/2 + k*(m-k))
	clear(g)
	for p := 0; p < m; p++ {
		c := -w[p] / nE
		for j := 0; j < d; j++ {
			g[j] += c * rs.xi[p][j]
		}
	}
	return nil
}
