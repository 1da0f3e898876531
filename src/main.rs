//! The `storgate` command line.
fn main() {
    println!("storgate");
}
