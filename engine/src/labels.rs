//! Enums whose every variant is a label (of a metric, or in JSON).
//! [`labelled_enum!`](crate::labelled_enum) declares the enum, its `ALL`
//! list and its `as_str` labels from one list, so a variant cannot be left
//! out of `ALL`: not counted, or indexing past an array sized by it. The
//! gateway uses it too (its routes and statuses), hence the export.

/// Declares a fieldless enum with `ALL` (every variant, in declaration
/// order, so `ALL[v as usize] == v`), `COUNT` and `as_str`. Derives
/// `Clone, Copy, Debug, PartialEq, Eq, Hash`; more can be given as
/// attributes.
#[macro_export]
macro_rules! labelled_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order: `ALL[v as usize] == v`.
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];
            /// How many variants there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The variant's label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::labelled_enum! {
        enum Fruit {
            A => "a",
            B => "b",
            C => "c",
        }
    }

    #[test]
    fn all_follows_declaration_order() {
        assert_eq!(Fruit::COUNT, 3);
        for (i, v) in Fruit::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        let labels: Vec<_> = Fruit::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
    }
}
