//! Enums whose every variant is a metric label. [`labelled_enum!`] declares
//! the enum, its `ALL` list and its `as_str` labels from one list, so a
//! variant cannot be left out of the list (and so go uncounted, or index
//! past an array sized by it).

/// Declares a fieldless enum with `ALL` (every variant, in declaration
/// order, so `ALL[v as usize] == v`), `COUNT` and `as_str`.
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

            /// The variant's label, as exported in metrics and JSON.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }
        }
    };
}

pub(crate) use labelled_enum;

#[cfg(test)]
mod tests {
    labelled_enum! {
        enum Sample {
            A => "a",
            B => "b",
            C => "c",
        }
    }

    #[test]
    fn all_follows_declaration_order() {
        assert_eq!(Sample::COUNT, 3);
        for (i, v) in Sample::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        let labels: Vec<_> = Sample::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
    }
}
