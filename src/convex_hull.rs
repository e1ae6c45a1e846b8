//! Convex hulls of integer points, for the solidity of nuclei (`segment`'s measurements)
//! and the dents of their outlines (the watershed's concave cuts).

/// Indices into `points` of the vertices of their convex hull, counter-clockwise in (x, y),
/// collinear and repeated points left out (Andrew's monotone chain; equal points in index
/// order). Fewer than 3 points come back as they are, sorted; collinear points give the
/// two ends.
pub fn convex_hull(points: &[(i64, i64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i], i));
    if order.len() < 3 {
        return order;
    }
    let cross = |o: usize, a: usize, b: usize| {
        let (o, a, b) = (points[o], points[a], points[b]);
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut chain: Vec<usize> = Vec::with_capacity(2 * order.len());
    for pass in [order.clone(), order.into_iter().rev().collect()] {
        let floor = chain.len();
        for i in pass {
            while chain.len() >= floor + 2
                && cross(chain[chain.len() - 2], chain[chain.len() - 1], i) <= 0
            {
                chain.pop();
            }
            chain.push(i);
        }
        chain.pop(); // each half's last point starts the other half
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertices(points: &[(i64, i64)]) -> Vec<(i64, i64)> {
        convex_hull(points).into_iter().map(|i| points[i]).collect()
    }

    #[test]
    fn inner_collinear_and_repeated_points_are_left_out() {
        let points = [
            (2, 2),
            (0, 0),
            (4, 0),
            (2, 0),
            (4, 4),
            (0, 4),
            (1, 1),
            (4, 4),
            (0, 2),
        ];
        assert_eq!(vertices(&points), [(0, 0), (4, 0), (4, 4), (0, 4)]);
    }

    #[test]
    fn degenerate_sets_give_their_ends() {
        assert_eq!(vertices(&[(3, 1), (1, 1)]), [(1, 1), (3, 1)]);
        assert_eq!(
            vertices(&[(0, 0), (2, 2), (1, 1), (3, 3)]),
            [(0, 0), (3, 3)]
        );
        assert!(convex_hull(&[]).is_empty());
    }
}
