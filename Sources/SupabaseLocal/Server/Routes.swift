import Hummingbird

extension SupabaseLocalStack {
    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/health") { _, _ in Response(status: .ok) }
    }
}
