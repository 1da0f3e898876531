fn main() {
    for a in std::env::args().skip(1) {
        println!("== {a}");
        match storgate::config::load(std::path::Path::new(&a)) {
            Ok(l) => {
                for w in &l.warnings {
                    println!("warning: {w}");
                }
                print!("{}", storgate::config::summary(&l.config));
            }
            Err(es) => {
                for e in es {
                    println!("{e}");
                }
            }
        }
    }
}
