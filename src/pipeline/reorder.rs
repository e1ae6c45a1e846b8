//! Putting numbered items back in order.

/// Holds items that arrived ahead of their turn and releases them strictly by sequence
/// number 0, 1, 2, ...
///
/// Its size is fixed: a sequence number must fall in `[next, next + window)`. Producers
/// guarantee that by never holding more than `window` unreleased items at once (a map stage
/// does it with tickets), so the buffer cannot grow however slow one item is.
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    /// Ring of `window` slots; item `seq` lives at `seq % window`.
    slots: Vec<Option<T>>,
    next: u64,
    held: usize,
}

impl<T> ReorderBuffer<T> {
    /// # Panics
    /// If `window` is 0.
    pub fn new(window: usize) -> Self {
        assert!(window > 0, "a reorder window holds at least one item");
        Self {
            slots: std::iter::repeat_with(|| None).take(window).collect(),
            next: 0,
            held: 0,
        }
    }

    /// Stores item number `seq`.
    ///
    /// # Panics
    /// If `seq` was already released, lies `window` or more ahead of the next item to
    /// release, or is already held: each means the producer broke the window contract.
    pub fn insert(&mut self, seq: u64, item: T) {
        let window = self.slots.len() as u64;
        assert!(
            seq >= self.next && seq - self.next < window,
            "sequence number {seq} outside the reorder window [{}, {})",
            self.next,
            self.next + window
        );
        let slot = &mut self.slots[(seq % window) as usize];
        assert!(slot.is_none(), "sequence number {seq} inserted twice");
        *slot = Some(item);
        self.held += 1;
    }

    /// The next item in sequence, if it has arrived.
    pub fn pop(&mut self) -> Option<T> {
        let window = self.slots.len() as u64;
        let item = self.slots[(self.next % window) as usize].take()?;
        self.next += 1;
        self.held -= 1;
        Some(item)
    }

    /// Items held, waiting for an earlier one.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}

#[cfg(test)]
mod tests {
    use super::ReorderBuffer;

    #[test]
    fn releases_in_sequence_whatever_the_arrival_order() {
        let mut buffer = ReorderBuffer::new(4);
        let mut released = Vec::new();
        for seq in [2, 1, 3, 0, 5, 4, 7, 6] {
            buffer.insert(seq, seq * 10);
            while let Some(item) = buffer.pop() {
                released.push(item);
            }
        }
        assert_eq!(released, [0, 10, 20, 30, 40, 50, 60, 70]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn holds_early_items_until_the_gap_is_filled() {
        let mut buffer = ReorderBuffer::new(3);
        buffer.insert(1, 'b');
        buffer.insert(2, 'c');
        assert_eq!(buffer.pop(), None);
        assert_eq!(buffer.len(), 2);
        buffer.insert(0, 'a');
        assert_eq!(buffer.pop(), Some('a'));
        assert_eq!(buffer.pop(), Some('b'));
    }

    #[test]
    #[should_panic(expected = "outside the reorder window")]
    fn rejects_items_beyond_the_window() {
        ReorderBuffer::new(2).insert(2, ());
    }
}
