//! Which staging slot a batch on its way to the GPU takes: a slot is a pinned host buffer and a
//! device buffer of the same capacity, busy from the upload until the batch's tensor is dropped.
//! A batch takes the smallest free slot that holds it, else regrows a free one, else adds a slot,
//! so the ring settles at the loader's depth plus the batches a step holds at once.

/// A slot chosen for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken {
    pub index: usize,
    /// The slot's buffers must be (re)allocated for `len` values first.
    pub allocate: bool,
}

/// Capacities and busy flags of the slots.
#[derive(Debug, Default)]
pub struct SlotBook {
    capacity: Vec<usize>,
    busy: Vec<bool>,
}

impl SlotBook {
    pub fn len(&self) -> usize {
        self.capacity.len()
    }

    pub fn is_empty(&self) -> bool {
        self.capacity.is_empty()
    }

    /// Marks a slot for `len` values busy and says whether its buffers must be allocated.
    pub fn take(&mut self, len: usize) -> Taken {
        let free = || (0..self.capacity.len()).filter(|&i| !self.busy[i]);
        let fits = free().filter(|&i| self.capacity[i] >= len).min_by_key(|&i| self.capacity[i]);
        let taken = match fits {
            Some(index) => Taken { index, allocate: false },
            None => match free().next() {
                Some(index) => {
                    self.capacity[index] = len;
                    Taken { index, allocate: true }
                }
                None => {
                    self.capacity.push(len);
                    self.busy.push(false);
                    Taken { index: self.capacity.len() - 1, allocate: true }
                }
            },
        };
        self.busy[taken.index] = true;
        taken
    }

    /// The batch in slot `index` is gone.
    pub fn give_back(&mut self, index: usize) {
        if let Some(b) = self.busy.get_mut(index) {
            *b = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_once_given_back_and_grow_only_when_too_small() {
        let mut book = SlotBook::default();
        assert_eq!(book.take(100), Taken { index: 0, allocate: true });
        assert_eq!(book.take(100), Taken { index: 1, allocate: true }, "slot 0 is busy");
        book.give_back(0);
        assert_eq!(book.take(60), Taken { index: 0, allocate: false }, "a smaller batch fits");
        book.give_back(0);
        book.give_back(1);
        assert_eq!(book.take(150), Taken { index: 0, allocate: true }, "a free slot regrows");
        assert_eq!(book.take(90), Taken { index: 1, allocate: false });
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn the_smallest_slot_that_fits_is_taken() {
        let mut book = SlotBook::default();
        for len in [300, 100, 200] {
            book.take(len);
        }
        for i in 0..3 {
            book.give_back(i);
        }
        assert_eq!(book.take(150).index, 2, "200 is the smallest that holds 150");
        assert_eq!(book.take(50).index, 1);
        assert_eq!(book.take(50), Taken { index: 0, allocate: false });
        assert_eq!(book.take(50), Taken { index: 3, allocate: true }, "all busy: a new slot");
    }
}
